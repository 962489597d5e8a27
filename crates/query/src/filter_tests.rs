#![allow(clippy::unwrap_used)]
use super::*;
use bson::{DateTime, Regex, doc, oid::ObjectId};
use proptest::prelude::*;

fn m(filter: Document, d: &Document) -> bool {
    Filter::parse(&filter).unwrap().matches(d)
}

#[test]
#[expect(clippy::too_many_lines, reason = "a table of cases, one line each")]
fn table_of_matches() {
    let d = doc! {
        "_id": 1,
        "n": 5,
        "f": 2.5,
        "s": "hello",
        "nul": null,
        "arr": [1, 5, 9],
        "nested": [[1, 2], [3]],
        "docs": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}],
        "sub": {"x": {"y": 3}, "t": true},
        "tags": ["red", "blue"],
        "date": DateTime::from_millis(1000),
        "oid": ObjectId::from_bytes([1; 12]),
    };
    let table: Vec<(Document, bool)> = vec![
        (doc! {}, true),
        (doc! {"n": 5}, true),
        (doc! {"n": 5.0}, true),
        (doc! {"n": 6}, false),
        (doc! {"n": "5"}, false),
        (doc! {"sub.x.y": 3}, true),
        (doc! {"sub": {"x": {"y": 3}, "t": true}}, true),
        (doc! {"sub": {"t": true, "x": {"y": 3}}}, false),
        (doc! {"arr": 5}, true),
        (doc! {"arr": [1, 5, 9]}, true),
        (doc! {"arr": [5, 1, 9]}, false),
        (doc! {"nested": [3]}, true),
        (doc! {"nested": 3}, false),
        (doc! {"arr.1": 5}, true),
        (doc! {"arr.0": 5}, false),
        (doc! {"docs.a": 2}, true),
        (doc! {"docs.b": "z"}, false),
        (doc! {"docs.1.b": "y"}, true),
        (doc! {"missing": null}, true),
        (doc! {"nul": null}, true),
        (doc! {"n": null}, false),
        (doc! {"docs.c": null}, true),
        (doc! {"n": {"$eq": 5}}, true),
        (doc! {"n": {"$ne": 5}}, false),
        (doc! {"arr": {"$ne": 5}}, false),
        (doc! {"arr": {"$ne": 4}}, true),
        (doc! {"missing": {"$ne": 1}}, true),
        (doc! {"n": {"$gt": 4}}, true),
        (doc! {"n": {"$gt": 5}}, false),
        (doc! {"n": {"$gte": 5}}, true),
        (doc! {"n": {"$lt": 5.5}}, true),
        (doc! {"n": {"$lte": 4}}, false),
        (doc! {"s": {"$gt": 5}}, false),
        (doc! {"s": {"$gt": "a"}}, true),
        (doc! {"n": {"$gt": "a"}}, false),
        (doc! {"arr": {"$gt": 8}}, true),
        (doc! {"arr": {"$gt": 9}}, false),
        (doc! {"arr": {"$gt": 2, "$lt": 4}}, true), // 5 > 2, 1 < 4 (different elements)
        (doc! {"arr": {"$elemMatch": {"$gt": 2, "$lt": 4}}}, false),
        (doc! {"arr": {"$elemMatch": {"$gt": 4, "$lt": 6}}}, true),
        (doc! {"docs": {"$elemMatch": {"a": 1, "b": "x"}}}, true),
        (doc! {"docs": {"$elemMatch": {"a": 1, "b": "y"}}}, false),
        (doc! {"docs": {"$elemMatch": {"$or": [{"a": 5}, {"b": "y"}]}}}, true),
        (doc! {"n": {"$elemMatch": {"$gt": 1}}}, false),
        (doc! {"missing": {"$gte": null}}, true),
        (doc! {"missing": {"$gt": null}}, false),
        (doc! {"date": {"$gt": DateTime::from_millis(10)}}, true),
        (doc! {"date": {"$gt": 10}}, false),
        (doc! {"n": {"$in": [1, 5]}}, true),
        (doc! {"n": {"$in": []}}, false),
        (doc! {"arr": {"$in": [9, 100]}}, true),
        (doc! {"missing": {"$in": [null]}}, true),
        (doc! {"s": {"$in": [Regex { pattern: "^he".into(), options: "".into() }]}}, true),
        (doc! {"n": {"$nin": [1, 5]}}, false),
        (doc! {"n": {"$nin": [1, 2]}}, true),
        (doc! {"missing": {"$nin": [1]}}, true),
        (doc! {"n": {"$exists": true}}, true),
        (doc! {"nul": {"$exists": true}}, true),
        (doc! {"missing": {"$exists": false}}, true),
        (doc! {"missing": {"$exists": true}}, false),
        (doc! {"docs.a": {"$exists": true}}, true),
        (doc! {"docs.zz": {"$exists": true}}, false),
        (doc! {"n": {"$type": "int"}}, true),
        (doc! {"n": {"$type": 16}}, true),
        (doc! {"n": {"$type": "number"}}, true),
        (doc! {"f": {"$type": "double"}}, true),
        (doc! {"f": {"$type": ["string", "double"]}}, true),
        (doc! {"s": {"$type": 2}}, true),
        (doc! {"arr": {"$type": "array"}}, true),
        (doc! {"arr": {"$type": "int"}}, true),
        (doc! {"nul": {"$type": "null"}}, true),
        (doc! {"missing": {"$type": "null"}}, false),
        (doc! {"oid": {"$type": "objectId"}}, true),
        (doc! {"sub": {"$type": "object"}}, true),
        (doc! {"s": {"$regex": "^h.l"}}, true),
        (doc! {"s": {"$regex": "^H", "$options": "i"}}, true),
        (doc! {"s": {"$regex": "^H"}}, false),
        (doc! {"s": Regex { pattern: "LLO$".into(), options: "i".into() }}, true),
        (doc! {"tags": Regex { pattern: "^bl".into(), options: "".into() }}, true),
        (doc! {"n": {"$regex": "5"}}, false),
        (doc! {"s": {"$not": Regex { pattern: "^x".into(), options: "".into() }}}, true),
        (doc! {"n": {"$not": {"$gt": 4}}}, false),
        (doc! {"missing": {"$not": {"$gt": 4}}}, true),
        (doc! {"arr": {"$size": 3}}, true),
        (doc! {"arr": {"$size": 2}}, false),
        (doc! {"n": {"$size": 1}}, false),
        (doc! {"tags": {"$all": ["blue", "red"]}}, true),
        (doc! {"tags": {"$all": ["blue", "green"]}}, false),
        (doc! {"tags": {"$all": []}}, false),
        (doc! {"docs": {"$all": [{"$elemMatch": {"a": 1}}, {"$elemMatch": {"a": 2}}]}}, true),
        (doc! {"arr": {"$all": [[1, 5, 9]]}}, true),
        (doc! {"n": {"$mod": [2, 1]}}, true),
        (doc! {"n": {"$mod": [5, 0]}}, true),
        (doc! {"n": {"$mod": [3, 0]}}, false),
        (doc! {"f": {"$mod": [2, 0]}}, true),
        (doc! {"$and": [{"n": 5}, {"s": "hello"}]}, true),
        (doc! {"$and": [{"n": 5}, {"s": "x"}]}, false),
        (doc! {"$or": [{"n": 6}, {"s": "hello"}]}, true),
        (doc! {"$or": [{"n": 6}, {"s": "x"}]}, false),
        (doc! {"$nor": [{"n": 6}, {"s": "x"}]}, true),
        (doc! {"$nor": [{"n": 5}]}, false),
        (doc! {"$expr": {"$gt": ["$n", "$f"]}}, true),
        (doc! {"$expr": {"$eq": ["$sub.x.y", 3]}}, true),
        (doc! {"$expr": {"$lt": ["$n", 0]}}, false),
        (doc! {"n": 5, "$comment": "hi"}, true),
        (doc! {"n": {"$bitsAllSet": [0, 2]}}, true),
        (doc! {"n": {"$bitsAllSet": 7}}, false),
        (doc! {"n": {"$bitsAnySet": 6}}, true),
        (doc! {"n": {"$bitsAllClear": [1, 3]}}, true),
        (doc! {"n": {"$bitsAnyClear": 5}}, false),
        (doc! {"s": {"$bitsAnySet": 1}}, false),
        (doc! {"sub.t": {"$in": [true]}, "n": {"$gte": 5, "$lte": 5}}, true),
    ];
    for (f, want) in table {
        assert_eq!(m(f.clone(), &d), want, "filter {f}");
    }
}

#[test]
fn filter_is_send_sync_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<Filter>();
    assert_traits::<crate::Update>();
    assert_traits::<crate::Projection>();
    assert_traits::<crate::SortSpec>();
    assert_traits::<crate::Pipeline>();
}

#[test]
fn null_semantics_in_arrays() {
    assert!(m(doc! {"a": null}, &doc! {"a": [1, null]}));
    assert!(!m(doc! {"a": null}, &doc! {"a": [1, 2]}));
    assert!(m(doc! {"a.b": null}, &doc! {"a": [{"b": 1}, {"c": 1}]}));
    assert!(!m(doc! {"a.b": null}, &doc! {"a": [{"b": 1}, {"b": 2}]}));
    assert!(m(doc! {"a": {"$ne": null}}, &doc! {"a": 1}));
    assert!(!m(doc! {"a": {"$ne": null}}, &doc! {"b": 1}));
}

#[test]
fn parse_errors_are_bad_value() {
    let bad: Vec<Document> = vec![
        doc! {"a": {"$foo": 1}},
        doc! {"$foo": 1},
        doc! {"$and": []},
        doc! {"$or": 1},
        doc! {"$and": [1]},
        doc! {"a": {"$in": 1}},
        doc! {"a": {"$nin": {"x": 1}}},
        doc! {"a": {"$size": -1}},
        doc! {"a": {"$size": 1.5}},
        doc! {"a": {"$size": "x"}},
        doc! {"a": {"$mod": [0, 1]}},
        doc! {"a": {"$mod": [1]}},
        doc! {"a": {"$mod": [1, 2, 3]}},
        doc! {"a": {"$type": "nope"}},
        doc! {"a": {"$type": 99}},
        doc! {"a": {"$elemMatch": 1}},
        doc! {"a": {"$not": 1}},
        doc! {"a": {"$not": {}}},
        doc! {"a": {"$options": "i"}},
        doc! {"a": {"$all": 1}},
        doc! {"a": {"$gt": 1, "b": 2}},
        doc! {"$where": "true"},
        doc! {"a": {"$bitsAllSet": -1}},
        doc! {"a": {"$bitsAllSet": "x"}},
        doc! {"a": {"$ne": Regex { pattern: "x".into(), options: "".into() }}},
    ];
    for f in bad {
        let e = Filter::parse(&f).unwrap_err();
        assert_eq!(e.code, 2, "{f}: {e}");
    }
    let e = Filter::parse(&doc! {"a": {"$regex": "("}}).unwrap_err();
    assert_eq!(e.code, 51091);
    let e = Filter::parse(&doc! {"$expr": {"$nope": 1}}).unwrap_err();
    assert_eq!(e.code, 168);
}

#[test]
fn expr_errors_surface_in_try_matches() {
    let f = Filter::parse(&doc! {"$expr": {"$gt": [{"$divide": ["$a", "$b"]}, 1]}}).unwrap();
    assert!(f.try_matches(&doc! {"a": 4, "b": 2}).unwrap());
    assert_eq!(f.try_matches(&doc! {"a": 4, "b": 0}).unwrap_err().code, 2);
    assert!(!f.matches(&doc! {"a": 4, "b": 0}));
}

#[test]
fn nan_comparisons() {
    let nan = doc! {"a": f64::NAN};
    let five = doc! {"a": 5};
    assert!(m(doc! {"a": f64::NAN}, &nan));
    assert!(m(doc! {"a": {"$gte": f64::NAN}}, &nan));
    assert!(!m(doc! {"a": {"$gt": f64::NAN}}, &nan));
    assert!(!m(doc! {"a": {"$gt": f64::NAN}}, &five));
    assert!(!m(doc! {"a": {"$lt": f64::NAN}}, &five));
    assert!(!m(doc! {"a": {"$lt": 10}}, &nan));
    assert!(!m(doc! {"a": {"$gt": 0}}, &nan));
}

#[test]
fn literal_document_with_dollar_key_later_is_equality() {
    // Only the first key decides whether an object is an operator object.
    let f = Filter::parse(&doc! {"a": {"b": 1}}).unwrap();
    assert!(f.matches(&doc! {"a": {"b": 1}}));
    assert!(!f.matches(&doc! {"a": {"b": 1, "c": 2}}));
}

#[test]
fn index_predicates_and_seed() {
    let f = Filter::parse(&doc! {
        "a": 1,
        "b": {"$gt": 2, "$lte": 9},
        "c": {"$in": [1, 2]},
        "d": null,
        "$or": [{"x": 1}, {"y": 2}],
        "$and": [{"e": "s"}, {"b": {"$gte": 3}}],
        "r": Regex { pattern: "x".into(), options: "".into() },
    })
    .unwrap();
    let safe = f.index_predicates();
    assert_eq!(
        safe[1],
        (
            "b".to_string(),
            IndexPredicate::Range { lo: Some(Bson::Int32(2)), lo_incl: false, hi: None, hi_incl: true }
        )
    );
    let preds = f.index_predicates_intersected();
    assert_eq!(
        preds,
        vec![
            ("a".to_string(), IndexPredicate::Eq(Bson::Int32(1))),
            (
                "b".to_string(),
                IndexPredicate::Range {
                    lo: Some(Bson::Int32(3)),
                    lo_incl: true,
                    hi: Some(Bson::Int32(9)),
                    hi_incl: true
                }
            ),
            ("c".to_string(), IndexPredicate::In(vec![Bson::Int32(1), Bson::Int32(2)])),
            ("e".to_string(), IndexPredicate::Eq(Bson::String("s".into()))),
        ]
    );
    let f = Filter::parse(&doc! {"_id": 7, "a.b": "x", "c": {"$eq": 2}, "d": {"$gt": 1}, "$and": [{"e": 1}]})
        .unwrap();
    assert_eq!(f.equality_seed(), doc! {"_id": 7, "a": {"b": "x"}, "c": 2, "e": 1});
    assert!(Filter::parse(&doc! {}).unwrap().is_empty());
    assert!(!f.is_empty());
}

#[test]
fn positional_match_finds_first_matching_element() {
    let d =
        doc! {"grades": [70, 85, 92], "items": [{"k": "a", "q": 1}, {"k": "b", "q": 5}, {"k": "b", "q": 9}]};
    let f = Filter::parse(&doc! {"grades": {"$gte": 80}}).unwrap();
    assert_eq!(f.positional_match(&d, "grades"), Some(1));
    let f = Filter::parse(&doc! {"items.k": "b", "items.q": {"$gt": 6}}).unwrap();
    assert_eq!(f.positional_match(&d, "items"), Some(2));
    let f = Filter::parse(&doc! {"items": {"$elemMatch": {"k": "b"}}}).unwrap();
    assert_eq!(f.positional_match(&d, "items"), Some(1));
    let f = Filter::parse(&doc! {"grades": {"$elemMatch": {"$gt": 90}}}).unwrap();
    assert_eq!(f.positional_match(&d, "grades"), Some(2));
    let f = Filter::parse(&doc! {"other": 1}).unwrap();
    assert_eq!(f.positional_match(&d, "items"), None);
}

#[test]
fn elem_filter_for_pull() {
    let f = ElemFilter::parse(&Bson::Document(doc! {"$gte": 5})).unwrap();
    assert!(f.matches(&Bson::Int32(7)));
    assert!(!f.matches(&Bson::Int32(1)));
    let f = ElemFilter::parse(&Bson::Document(doc! {"a": 1})).unwrap();
    assert!(f.matches(&Bson::Document(doc! {"a": 1, "b": 2})));
    assert!(!f.matches(&Bson::Int32(1)));
    let f = ElemFilter::parse(&Bson::Int32(3)).unwrap();
    assert!(f.matches(&Bson::Double(3.0)));
}

fn arb_scalar() -> impl Strategy<Value = Bson> {
    prop_oneof![
        Just(Bson::Null),
        (-3i32..3).prop_map(Bson::Int32),
        (-3i64..3).prop_map(|i| Bson::Double(i as f64 / 2.0)),
        "[ab]{0,2}".prop_map(Bson::String),
        any::<bool>().prop_map(Bson::Boolean),
    ]
}

fn arb_value() -> impl Strategy<Value = Bson> {
    prop_oneof![
        3 => arb_scalar(),
        1 => prop::collection::vec(arb_scalar(), 0..3).prop_map(Bson::Array),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// $ne/$nin/$not are exact complements of their positive forms; $nor of $or.
    #[test]
    fn negations_are_complements(v in arb_value(), x in arb_scalar(), y in arb_scalar(), present in any::<bool>()) {
        let d = if present { doc! {"a": v} } else { doc! {"b": 1} };
        prop_assert_eq!(m(doc! {"a": {"$ne": x.clone()}}, &d), !m(doc! {"a": {"$eq": x.clone()}}, &d));
        prop_assert_eq!(
            m(doc! {"a": {"$nin": [x.clone(), y.clone()]}}, &d),
            !m(doc! {"a": {"$in": [x.clone(), y.clone()]}}, &d)
        );
        prop_assert_eq!(m(doc! {"a": {"$not": {"$gt": x.clone()}}}, &d), !m(doc! {"a": {"$gt": x.clone()}}, &d));
        prop_assert_eq!(
            m(doc! {"$nor": [{"a": x.clone()}, {"a": y.clone()}]}, &d),
            !m(doc! {"$or": [{"a": x.clone()}, {"a": y.clone()}]}, &d)
        );
        // $in of one value is $eq.
        prop_assert_eq!(m(doc! {"a": {"$in": [x.clone()]}}, &d), m(doc! {"a": x.clone()}, &d));
        // $gte is $gt or $eq for non-null scalar operands.
        if !matches!(x, Bson::Null) {
            prop_assert_eq!(
                m(doc! {"a": {"$gte": x.clone()}}, &d),
                m(doc! {"$or": [{"a": {"$gt": x.clone()}}, {"a": x.clone()}]}, &d)
            );
        }
    }

    /// An index predicate never excludes a matching document (bounds are a superset).
    #[test]
    fn index_predicates_are_supersets(v in arb_value(), x in arb_scalar(), y in arb_scalar()) {
        let d = doc! {"a": v.clone()};
        let f = Filter::parse(&doc! {"a": {"$gte": x.clone(), "$lt": y.clone()}}).unwrap();
        if f.matches(&d) {
            for (_, p) in f.index_predicates() {
                if let IndexPredicate::Range { lo, lo_incl, hi, hi_incl } = p {
                    let vals: Vec<Bson> = match &v { Bson::Array(a) => a.clone(), o => vec![o.clone()] };
                    let ok = vals.iter().any(|e| {
                        let lo_ok = lo.as_ref().is_none_or(|l| { let o = cmp_bson(e, l); o.is_gt() || (lo_incl && o.is_eq()) });
                        let hi_ok = hi.as_ref().is_none_or(|h| { let o = cmp_bson(e, h); o.is_lt() || (hi_incl && o.is_eq()) });
                        lo_ok && hi_ok
                    });
                    prop_assert!(ok);
                }
            }
        }
    }
}

#[test]
fn conjuncts_and_top_level_fields() {
    let f = Filter::parse(
        &doc! {"a": 1, "$and": [{"b.x": 1}, {"$and": [{"c": {"$gt": 1}}]}], "d": {"$in": [1, 2]}},
    )
    .unwrap();
    let parts = f.split_conjuncts();
    let fields: Vec<Option<Vec<String>>> = parts.iter().map(Filter::top_level_fields).collect();
    assert_eq!(
        fields,
        vec![
            Some(vec!["a".to_owned()]),
            Some(vec!["b".to_owned()]),
            Some(vec!["c".to_owned()]),
            Some(vec!["d".to_owned()])
        ]
    );
    for d in [
        doc! {"a": 1, "b": {"x": 1}, "c": 2, "d": 2},
        doc! {"a": 1, "b": {"x": 1}, "c": 1, "d": 2},
        doc! {"a": 2},
        doc! {},
    ] {
        assert_eq!(f.matches(&d), parts.iter().all(|p| p.matches(&d)), "{d}");
    }
    assert_eq!(Filter::parse(&doc! {"$or": [{"a": 1}, {"b": 1}]}).unwrap().split_conjuncts().len(), 1);
    assert_eq!(Filter::parse(&doc! {"$expr": {"$eq": ["$$ROOT", 1]}}).unwrap().top_level_fields(), None);
}

#[test]
fn let_variables_reach_expr_and_undefined_ones_fail_at_parse() {
    use crate::vars::LetVars;
    let lets = LetVars::parse(Some(&Bson::Document(doc! {"v": 2}))).unwrap();
    let f = Filter::parse(&doc! {"$expr": {"$gte": ["$x", "$$v"]}}).unwrap().with_let(&lets).unwrap();
    assert!(f.matches(&doc! {"x": 2}));
    assert!(!f.matches(&doc! {"x": 1}));
    // Kept by the conjuncts the planner splits off.
    let f = Filter::parse(&doc! {"a": 1, "$expr": {"$eq": ["$x", "$$v"]}}).unwrap().with_let(&lets).unwrap();
    assert!(f.split_conjuncts().iter().all(|c| c.matches(&doc! {"a": 1, "x": 2})));
    // Undefined: an error before any document, not "no match".
    let e = Filter::parse(&doc! {"$or": [{"a": 1}, {"$expr": "$$w"}]}).unwrap().with_let(&lets).unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (17276, "Use of undefined variable: w"));
    assert!(
        Filter::parse(&doc! {"$expr": {"$lt": ["$$NOW", 1]}}).unwrap().with_let(&LetVars::none()).is_ok()
    );
}

/// Values nested up to three levels: scalars, arrays and documents with fields `a`, `b`, `0`.
fn arb_nested() -> impl Strategy<Value = Bson> {
    arb_value().prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Bson::Array),
            prop::collection::vec((prop::sample::select(vec!["a", "b", "0"]), inner), 0..3).prop_map(|kvs| {
                let mut d = Document::new();
                for (k, v) in kvs {
                    d.insert(k, v);
                }
                Bson::Document(d)
            }),
        ]
    })
}

/// `match_path` reading every leaf predicate through the collected values, as it did before
/// paths that cross no array were read in place.
fn match_path_general(doc: &dyn Fields, parts: &[String], pred: &Pred) -> bool {
    match pred {
        Pred::Not(ps) => !ps.iter().all(|p| match_path_general(doc, parts, p)),
        Pred::And(ps) => ps.iter().all(|p| match_path_general(doc, parts, p)),
        _ => match_path_collected(doc, parts, pred),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Reading a path in place agrees with collecting its values: mixed types, arrays at any
    /// level, missing fields, dotted and numeric components, every kind of leaf predicate.
    #[test]
    fn in_place_paths_agree_with_collected(
        root in prop::collection::vec((prop::sample::select(vec!["a", "b"]), arb_nested()), 0..3),
        path in prop::sample::select(vec!["a", "b", "a.b", "a.0", "a.b.a", "a.0.b", "b.a.0"]),
        x in arb_scalar(),
        op in prop::sample::select(vec!["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$type", "$size", "$not"]),
    ) {
        let mut d = Document::new();
        for (k, v) in root {
            d.insert(k, v);
        }
        let arg = match op {
            "$in" | "$nin" => Bson::Array(vec![x.clone(), Bson::Int32(1)]),
            "$exists" => Bson::Boolean(matches!(x, Bson::Boolean(true) | Bson::Int32(1..))),
            "$type" => Bson::String(["double", "string", "array", "object", "null", "bool", "int"][(d.len() + path.len()) % 7].to_string()),
            "$size" => Bson::Int32(1),
            "$not" => Bson::Document(doc! {"$gt": x.clone()}),
            _ => x.clone(),
        };
        let pred = parse_field_value(&Bson::Document(doc! {op: arg})).unwrap();
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        prop_assert_eq!(match_path(&d, &parts, &pred), match_path_general(&d, &parts, &pred), "{} {:?} on {}", path, pred, d);
    }
}
