#![allow(clippy::unwrap_used)]
use super::*;
use bson::doc;
use proptest::prelude::*;

fn up(update: Document, mut d: Document) -> (Document, bool) {
    let u = Update::parse(&update, None).unwrap();
    let changed = u.apply(&mut d, false).unwrap();
    (d, changed)
}

fn up_err(update: Document, mut d: Document) -> CommandError {
    match Update::parse(&update, None) {
        Err(e) => e,
        Ok(u) => u.apply(&mut d, false).unwrap_err(),
    }
}

#[test]
#[expect(clippy::too_many_lines, reason = "a table of cases, one line each")]
fn operator_table() {
    let base = doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}};
    let table: Vec<(Document, Document, bool)> = vec![
        (doc! {"$set": {"a": 2}}, doc! {"_id": 1, "a": 2, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}}, true),
        (doc! {"$set": {"a": 1}}, base.clone(), false),
        (
            doc! {"$set": {"o.q": 2}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 2, 3], "o": {"p": 1, "q": 2}},
            true,
        ),
        (
            doc! {"$set": {"arr.1": 20}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 20, 3], "o": {"p": 1}},
            true,
        ),
        (
            doc! {"$set": {"new.deep": true}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}, "new": {"deep": true}},
            true,
        ),
        (doc! {"$unset": {"a": ""}}, doc! {"_id": 1, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}}, true),
        (doc! {"$unset": {"zz": 1}}, base.clone(), false),
        (
            doc! {"$unset": {"arr.0": 1}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [null, 2, 3], "o": {"p": 1}},
            true,
        ),
        (doc! {"$inc": {"a": 5}}, doc! {"_id": 1, "a": 6, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}}, true),
        (doc! {"$inc": {"a": 0}}, base.clone(), false),
        (
            doc! {"$inc": {"a": 1.5}},
            doc! {"_id": 1, "a": 2.5, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}},
            true,
        ),
        (
            doc! {"$inc": {"n": 2i64}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}, "n": 2i64},
            true,
        ),
        (doc! {"$mul": {"a": 3}}, doc! {"_id": 1, "a": 3, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}}, true),
        (
            doc! {"$mul": {"m": 3.0}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}, "m": 0.0},
            true,
        ),
        (doc! {"$min": {"a": 0}}, doc! {"_id": 1, "a": 0, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}}, true),
        (doc! {"$min": {"a": 5}}, base.clone(), false),
        (doc! {"$max": {"a": 5}}, doc! {"_id": 1, "a": 5, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}}, true),
        (
            doc! {"$max": {"a": "str"}},
            doc! {"_id": 1, "a": "str", "s": "x", "arr": [1, 2, 3], "o": {"p": 1}},
            true,
        ),
        (
            doc! {"$push": {"arr": 4}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 2, 3, 4], "o": {"p": 1}},
            true,
        ),
        (
            doc! {"$push": {"new": 4}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}, "new": [4]},
            true,
        ),
        (
            doc! {"$push": {"arr": {"$each": [5, 0], "$position": 0}}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [5, 0, 1, 2, 3], "o": {"p": 1}},
            true,
        ),
        (
            doc! {"$push": {"arr": {"$each": [5, 0], "$sort": 1}}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [0, 1, 2, 3, 5], "o": {"p": 1}},
            true,
        ),
        (
            doc! {"$push": {"arr": {"$each": [5, 0], "$sort": -1, "$slice": 2}}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [5, 3], "o": {"p": 1}},
            true,
        ),
        (
            doc! {"$push": {"arr": {"$each": [4], "$slice": -2}}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [3, 4], "o": {"p": 1}},
            true,
        ),
        (
            doc! {"$push": {"arr": {"$each": [9], "$position": -1}}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 2, 9, 3], "o": {"p": 1}},
            true,
        ),
        (doc! {"$push": {"arr": {"$each": []}}}, base.clone(), false),
        (doc! {"$addToSet": {"arr": 2}}, base.clone(), false),
        (doc! {"$addToSet": {"arr": 2.0}}, base.clone(), false),
        (
            doc! {"$addToSet": {"arr": {"$each": [2, 4, 4]}}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 2, 3, 4], "o": {"p": 1}},
            true,
        ),
        (
            doc! {"$addToSet": {"t": "v"}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}, "t": ["v"]},
            true,
        ),
        (doc! {"$pop": {"arr": 1}}, doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 2], "o": {"p": 1}}, true),
        (doc! {"$pop": {"arr": -1}}, doc! {"_id": 1, "a": 1, "s": "x", "arr": [2, 3], "o": {"p": 1}}, true),
        (doc! {"$pop": {"zz": 1}}, base.clone(), false),
        (doc! {"$pull": {"arr": 2}}, doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 3], "o": {"p": 1}}, true),
        (
            doc! {"$pull": {"arr": {"$gte": 2}}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [1], "o": {"p": 1}},
            true,
        ),
        (doc! {"$pull": {"arr": 7}}, base.clone(), false),
        (
            doc! {"$pullAll": {"arr": [1, 3]}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [2], "o": {"p": 1}},
            true,
        ),
        (
            doc! {"$rename": {"a": "b"}},
            doc! {"_id": 1, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}, "b": 1},
            true,
        ),
        (
            doc! {"$rename": {"o.p": "q"}},
            doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 2, 3], "o": {}, "q": 1},
            true,
        ),
        (doc! {"$rename": {"zz": "b"}}, base.clone(), false),
        (doc! {"$setOnInsert": {"a": 9}}, base.clone(), false),
        (
            doc! {"$bit": {"a": {"or": 4}}},
            doc! {"_id": 1, "a": 5, "s": "x", "arr": [1, 2, 3], "o": {"p": 1}},
            true,
        ),
        (doc! {"$set": {}}, base.clone(), false),
    ];
    for (u, want, changed) in table {
        let (got, c) = up(u.clone(), base.clone());
        assert_eq!(got, want, "{u}");
        assert_eq!(c, changed, "changed flag for {u}");
    }
}

#[test]
fn push_sort_by_field_and_pull_by_query() {
    let d = doc! {"_id": 1, "q": [{"s": 5, "n": "a"}, {"s": 1, "n": "b"}]};
    let (got, _) = up(doc! {"$push": {"q": {"$each": [{"s": 3, "n": "c"}], "$sort": {"s": -1}}}}, d.clone());
    assert_eq!(got, doc! {"_id": 1, "q": [{"s": 5, "n": "a"}, {"s": 3, "n": "c"}, {"s": 1, "n": "b"}]});
    let (got, _) = up(doc! {"$pull": {"q": {"s": {"$lt": 3}}}}, d);
    assert_eq!(got, doc! {"_id": 1, "q": [{"s": 5, "n": "a"}]});
}

#[test]
fn fields_are_created_in_lexicographic_order() {
    let (got, _) = up(doc! {"$set": {"b": 1, "a": 1}, "$inc": {"c": 1}}, doc! {"_id": 1});
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["_id", "a", "b", "c"]);
}

#[test]
fn numeric_promotion() {
    use std::str::FromStr;
    let dec = |s: &str| Bson::Decimal128(bson::Decimal128::from_str(s).unwrap());
    let (got, _) = up(doc! {"$inc": {"a": 1}}, doc! {"_id": 1, "a": i32::MAX});
    assert_eq!(got.get("a"), Some(&Bson::Int64(i64::from(i32::MAX) + 1)));
    let (got, _) = up(doc! {"$inc": {"a": 1}}, doc! {"_id": 1, "a": dec("1.5")});
    assert!(matches!(got.get("a"), Some(Bson::Decimal128(_))));
    assert!(crate::bson_eq(got.get("a").unwrap(), &Bson::Double(2.5)));
    let (got, _) = up(doc! {"$mul": {"a": 2i64}}, doc! {"_id": 1, "a": 3});
    assert_eq!(got.get("a"), Some(&Bson::Int64(6)));
    let (got, _) = up(doc! {"$inc": {"a": 0.5}}, doc! {"_id": 1, "a": 1i64});
    assert_eq!(got.get("a"), Some(&Bson::Double(1.5)));
}

#[test]
fn current_date() {
    let (got, _) = up(doc! {"$currentDate": {"d": true, "t": {"$type": "timestamp"}}}, doc! {"_id": 1});
    assert!(matches!(got.get("d"), Some(Bson::DateTime(_))));
    assert!(matches!(got.get("t"), Some(Bson::Timestamp(_))));
    assert_eq!(up_err(doc! {"$currentDate": {"d": {"$type": "x"}}}, doc! {}).code, 2);
}

#[test]
fn error_codes() {
    let d = doc! {"_id": 1, "a": 1, "s": "x", "arr": [1, 2], "o": {"p": 1}};
    let table: Vec<(Document, i32)> = vec![
        (doc! {"$set": {"a": 1}, "$inc": {"a": 1}}, 40),
        (doc! {"$set": {"o": 1}, "$unset": {"o.p": 1}}, 40),
        (doc! {"$rename": {"a": "b"}, "$set": {"b": 1}}, 40),
        (doc! {"$set": {"_id": 2}}, 66),
        (doc! {"$unset": {"_id": 1}}, 66),
        (doc! {"$inc": {"s": 1}}, 14),
        (doc! {"$inc": {"a": "x"}}, 14),
        (doc! {"$mul": {"a": "x"}}, 14),
        (doc! {"$push": {"a": 1}}, 2),
        (doc! {"$addToSet": {"a": 1}}, 2),
        (doc! {"$pop": {"a": 1}}, 14),
        (doc! {"$pop": {"arr": 2}}, 9),
        (doc! {"$pull": {"a": 1}}, 2),
        (doc! {"$pullAll": {"arr": 1}}, 2),
        (doc! {"$foo": {"a": 1}}, 9),
        (doc! {"$set": 1}, 9),
        (doc! {"$set": {"a": 1}, "b": 2}, 9),
        (doc! {"$set": {"a..b": 1}}, 56),
        (doc! {"$set": {"a.b": 1}}, 28),
        (doc! {"$set": {"arr.x": 1}}, 28),
        (doc! {"$rename": {"a": "a"}}, 2),
        (doc! {"$rename": {"a": "a.b"}}, 2),
        (doc! {"$rename": {"a": 1}}, 2),
        (doc! {"$set": {"arr.$": 1}}, 2),
        (doc! {"$set": {"zz.$[]": 1}}, 2),
        (doc! {"$set": {"arr.$[x]": 1}}, 2),
        (doc! {"$push": {"arr": {"$each": 1}}}, 2),
        (doc! {"$push": {"arr": {"$each": [1], "$bogus": 1}}}, 2),
        (doc! {"$bit": {"a": {"nand": 1}}}, 2),
    ];
    for (u, code) in table {
        let e = up_err(u.clone(), d.clone());
        assert_eq!(e.code, code, "{u}: {e}");
    }
}

#[test]
fn failed_update_leaves_document_untouched() {
    let u = Update::parse(&doc! {"$set": {"a": 5}, "$inc": {"s": 1}}, None).unwrap();
    let mut d = doc! {"_id": 1, "a": 1, "s": "x"};
    assert_eq!(u.apply(&mut d, false).unwrap_err().code, 14);
    assert_eq!(d, doc! {"_id": 1, "a": 1, "s": "x"});
}

#[test]
fn replacement_documents() {
    let u = Update::parse(&doc! {"x": 1, "y": 2}, None).unwrap();
    assert!(u.is_replacement());
    let mut d = doc! {"_id": 5, "a": 1};
    assert!(u.apply(&mut d, false).unwrap());
    assert_eq!(d, doc! {"_id": 5, "x": 1, "y": 2});
    // Same _id in the replacement is fine, and _id stays first.
    let u = Update::parse(&doc! {"x": 1, "_id": 5}, None).unwrap();
    let mut d = doc! {"_id": 5, "x": 1};
    assert!(!u.apply(&mut d, false).unwrap());
    assert_eq!(d.keys().next().unwrap(), "_id");
    let u = Update::parse(&doc! {"_id": 6}, None).unwrap();
    assert_eq!(u.apply(&mut doc! {"_id": 5}, false).unwrap_err().code, 66);
    assert_eq!(Update::parse(&doc! {"a": 1, "$set": {"b": 1}}, None).unwrap_err().code, 52);
    let u = Update::parse(&doc! {}, None).unwrap();
    let mut d = doc! {"_id": 1, "a": 1};
    assert!(u.apply(&mut d, false).unwrap());
    assert_eq!(d, doc! {"_id": 1});
}

#[test]
fn upsert_insert_enables_set_on_insert_and_allows_new_id() {
    let u = Update::parse(&doc! {"$setOnInsert": {"c": 1}, "$set": {"a": 2}}, None).unwrap();
    let mut d = doc! {"_id": 3};
    assert!(u.apply(&mut d, true).unwrap());
    assert_eq!(d, doc! {"_id": 3, "a": 2, "c": 1});
    let u = Update::parse(&doc! {"$set": {"_id": 9}}, None).unwrap();
    let mut d = doc! {"x": 1};
    assert!(u.apply(&mut d, true).unwrap());
    assert_eq!(d.get_i32("_id").unwrap(), 9);
}

#[test]
fn positional_operators() {
    let d =
        doc! {"_id": 1, "g": [1, 5, 9], "s": [{"n": "a", "v": 1}, {"n": "b", "v": 2}, {"n": "b", "v": 3}]};
    let (got, _) = up(doc! {"$inc": {"g.$[]": 1}}, d.clone());
    assert_eq!(got.get_array("g").unwrap(), &vec![Bson::Int32(2), Bson::Int32(6), Bson::Int32(10)]);
    let u = Update::parse(&doc! {"$set": {"s.$[e].v": 0}}, Some(&[doc! {"e.n": "b"}])).unwrap();
    let mut got = d.clone();
    assert!(u.apply(&mut got, false).unwrap());
    assert_eq!(got.get_array("s").unwrap()[0], Bson::Document(doc! {"n": "a", "v": 1}));
    assert_eq!(got.get_array("s").unwrap()[2], Bson::Document(doc! {"n": "b", "v": 0}));
    let u = Update::parse(&doc! {"$mul": {"g.$[big]": 10}}, Some(&[doc! {"big": {"$gte": 5}}])).unwrap();
    let mut got = d.clone();
    u.apply(&mut got, false).unwrap();
    assert_eq!(got.get_array("g").unwrap(), &vec![Bson::Int32(1), Bson::Int32(50), Bson::Int32(90)]);
    // The query decides `$`.
    let u = Update::parse(&doc! {"$set": {"s.$.v": 42}}, None).unwrap();
    assert!(u.needs_query());
    let q = Filter::parse(&doc! {"s.n": "b"}).unwrap();
    let mut got = d.clone();
    assert!(u.apply_with_query(&mut got, false, Some(&q)).unwrap());
    assert_eq!(got.get_array("s").unwrap()[1], Bson::Document(doc! {"n": "b", "v": 42}));
    assert_eq!(got.get_array("s").unwrap()[2], Bson::Document(doc! {"n": "b", "v": 3}));
    // Array filter errors.
    assert_eq!(Update::parse(&doc! {"$set": {"a": 1}}, Some(&[doc! {"x": 1}])).unwrap_err().code, 9);
    assert_eq!(
        Update::parse(&doc! {"$set": {"a.$[x]": 1}}, Some(&[doc! {"x": 1}, doc! {"x": 2}])).unwrap_err().code,
        9
    );
    assert_eq!(Update::parse(&doc! {"$set": {"a.$[X]": 1}}, Some(&[doc! {"X": 1}])).unwrap_err().code, 2);
}

#[test]
fn pipeline_updates() {
    let u = Update::parse_pipeline(&[doc! {"$set": {"total": {"$add": ["$a", "$b"]}}}, doc! {"$unset": "b"}])
        .unwrap();
    let mut d = doc! {"_id": 1, "a": 2, "b": 3};
    assert!(u.apply(&mut d, false).unwrap());
    assert_eq!(d, doc! {"_id": 1, "a": 2, "total": 5});
    assert!(Update::parse_pipeline(&[doc! {"$group": {"_id": null}}]).is_err());
    let u = Update::parse_pipeline(&[doc! {"$project": {"a": 1, "_id": 0}}]).unwrap();
    let mut d = doc! {"_id": 1, "a": 2};
    u.apply(&mut d, false).unwrap();
    assert_eq!(d, doc! {"_id": 1, "a": 2});
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Applying an update twice changes nothing the second time for idempotent operators,
    /// and the changed flag agrees with document equality.
    #[test]
    fn idempotent_ops_report_no_change_twice(a in -5i32..5, b in -5i32..5, key in "[a-c]") {
        for u in [
            doc! {"$set": {key.clone(): b}},
            doc! {"$unset": {key.clone(): 1}},
            doc! {"$min": {key.clone(): b}},
            doc! {"$max": {key.clone(): b}},
            doc! {"$addToSet": {"arr": b}},
        ] {
            let parsed = Update::parse(&u, None).unwrap();
            let mut d = doc! {"_id": 1, "a": a, "arr": [a]};
            let before = d.clone();
            let c1 = parsed.apply(&mut d, false).unwrap();
            prop_assert_eq!(c1, d != before);
            let c2 = parsed.apply(&mut d, false).unwrap();
            prop_assert!(!c2);
            prop_assert_eq!(d.get("_id"), Some(&Bson::Int32(1)));
        }
    }

    /// $inc by n then by -n restores the number.
    #[test]
    fn inc_round_trips(a in -1000i32..1000, n in -1000i32..1000) {
        let mut d = doc! {"_id": 1, "a": a};
        Update::parse(&doc! {"$inc": {"a": n}}, None).unwrap().apply(&mut d, false).unwrap();
        Update::parse(&doc! {"$inc": {"a": -n}}, None).unwrap().apply(&mut d, false).unwrap();
        prop_assert_eq!(d.get("a"), Some(&Bson::Int32(a)));
    }
}
