#![allow(clippy::unwrap_used)]
use super::*;
use bson::{Bson, doc};

fn ev(e: Bson, d: &Document) -> Result<Bson> {
    let mut ctx = EvalCtx::new();
    Expr::parse(&e)?.eval(d, &mut ctx)
}

fn b(d: Document) -> Bson {
    Bson::Document(d)
}

#[test]
#[expect(clippy::too_many_lines, reason = "a table of cases, one line each")]
fn expression_table() {
    let d = doc! {
        "a": 5, "b": 2, "f": 2.5, "l": 7i64, "s": "Hello", "n": null,
        "arr": [1, 2, 3], "docs": [{"x": 1}, {"x": 2}, {"y": 3}],
        "sub": {"p": {"q": "deep"}},
        "date": bson::DateTime::from_millis(1_700_000_000_123), // 2023-11-14T22:13:20.123Z
    };
    let table: Vec<(Bson, Bson)> = vec![
        (Bson::String("$a".into()), Bson::Int32(5)),
        (Bson::String("$sub.p.q".into()), "deep".into()),
        (Bson::String("$docs.x".into()), Bson::Array(vec![1.into(), 2.into()])),
        (Bson::String("$missing".into()), MISSING),
        (Bson::String("literal".into()), "literal".into()),
        (Bson::String("$$ROOT.a".into()), Bson::Int32(5)),
        (Bson::String("$$CURRENT.b".into()), Bson::Int32(2)),
        (b(doc! {"$literal": "$a"}), "$a".into()),
        (b(doc! {"$add": ["$a", "$b", 1]}), Bson::Int32(8)),
        (b(doc! {"$add": ["$a", "$f"]}), Bson::Double(7.5)),
        (b(doc! {"$add": ["$a", "$l"]}), Bson::Int64(12)),
        (b(doc! {"$add": [2147483647, 1]}), Bson::Int64(2147483648)),
        (b(doc! {"$add": ["$a", "$n"]}), Bson::Null),
        (b(doc! {"$add": ["$date", 1000]}), Bson::DateTime(bson::DateTime::from_millis(1_700_000_001_123))),
        (b(doc! {"$subtract": ["$a", "$b"]}), Bson::Int32(3)),
        (b(doc! {"$subtract": ["$date", "$date"]}), Bson::Int64(0)),
        (b(doc! {"$multiply": ["$a", "$b", 2]}), Bson::Int32(20)),
        (b(doc! {"$divide": ["$a", "$b"]}), Bson::Double(2.5)),
        (b(doc! {"$mod": ["$a", "$b"]}), Bson::Int32(1)),
        (b(doc! {"$abs": -3}), Bson::Int32(3)),
        (b(doc! {"$floor": 2.7}), Bson::Double(2.0)),
        (b(doc! {"$ceil": 2.1}), Bson::Double(3.0)),
        (b(doc! {"$round": [2.567, 2]}), Bson::Double(2.57)),
        (b(doc! {"$trunc": 2.9}), Bson::Double(2.0)),
        (b(doc! {"$pow": [2, 10]}), Bson::Int32(1024)),
        (b(doc! {"$sqrt": 16}), Bson::Double(4.0)),
        (b(doc! {"$concat": ["$s", " ", "world"]}), "Hello world".into()),
        (b(doc! {"$concat": ["$s", "$n"]}), Bson::Null),
        (b(doc! {"$toUpper": "$s"}), "HELLO".into()),
        (b(doc! {"$toLower": "$s"}), "hello".into()),
        (b(doc! {"$substr": ["$s", 1, 3]}), "ell".into()),
        (b(doc! {"$substrCP": ["$s", 1, 2]}), "el".into()),
        (b(doc! {"$strLenCP": "$s"}), Bson::Int32(5)),
        (b(doc! {"$split": ["a,b,c", ","]}), Bson::Array(vec!["a".into(), "b".into(), "c".into()])),
        (b(doc! {"$strcasecmp": ["abc", "ABC"]}), Bson::Int32(0)),
        (b(doc! {"$indexOfBytes": ["hello", "l"]}), Bson::Int32(2)),
        (b(doc! {"$trim": {"input": "  x  "}}), "x".into()),
        (b(doc! {"$ltrim": {"input": "xxy", "chars": "x"}}), "y".into()),
        (b(doc! {"$replaceAll": {"input": "aXbX", "find": "X", "replacement": "-"}}), "a-b-".into()),
        (b(doc! {"$regexMatch": {"input": "$s", "regex": "^h", "options": "i"}}), Bson::Boolean(true)),
        (
            b(doc! {"$regexFind": {"input": "xaby", "regex": "a(b)"}}),
            b(doc! {"match": "ab", "idx": 1, "captures": ["b"]}),
        ),
        (b(doc! {"$regexFind": {"input": "xyz", "regex": "q"}}), Bson::Null),
        (b(doc! {"$eq": ["$a", 5.0]}), Bson::Boolean(true)),
        (b(doc! {"$ne": ["$a", 5]}), Bson::Boolean(false)),
        (b(doc! {"$gt": ["$a", "$b"]}), Bson::Boolean(true)),
        (b(doc! {"$gte": ["$a", 5]}), Bson::Boolean(true)),
        (b(doc! {"$lt": ["$a", "str"]}), Bson::Boolean(true)),
        (b(doc! {"$lte": ["$missing", null]}), Bson::Boolean(true)),
        (b(doc! {"$eq": ["$missing", null]}), Bson::Boolean(false)),
        (b(doc! {"$cmp": [1, 2]}), Bson::Int32(-1)),
        (b(doc! {"$and": [true, "$a"]}), Bson::Boolean(true)),
        (b(doc! {"$and": [true, 0]}), Bson::Boolean(false)),
        (b(doc! {"$or": [false, "$n"]}), Bson::Boolean(false)),
        (b(doc! {"$not": ["$n"]}), Bson::Boolean(true)),
        (b(doc! {"$cond": [{"$gt": ["$a", 3]}, "big", "small"]}), "big".into()),
        (b(doc! {"$cond": {"if": false, "then": 1, "else": 2}}), Bson::Int32(2)),
        (b(doc! {"$ifNull": ["$n", "$missing", "dflt"]}), "dflt".into()),
        (b(doc! {"$ifNull": ["$a", "dflt"]}), Bson::Int32(5)),
        (
            b(
                doc! {"$switch": {"branches": [{"case": {"$eq": ["$a", 1]}, "then": "one"}, {"case": {"$eq": ["$a", 5]}, "then": "five"}], "default": "other"}},
            ),
            "five".into(),
        ),
        (b(doc! {"$size": "$arr"}), Bson::Int32(3)),
        (b(doc! {"$arrayElemAt": ["$arr", -1]}), Bson::Int32(3)),
        (b(doc! {"$arrayElemAt": ["$arr", 10]}), MISSING),
        (b(doc! {"$first": "$arr"}), Bson::Int32(1)),
        (b(doc! {"$last": "$arr"}), Bson::Int32(3)),
        (b(doc! {"$in": [2, "$arr"]}), Bson::Boolean(true)),
        (b(doc! {"$in": [9, "$arr"]}), Bson::Boolean(false)),
        (b(doc! {"$isArray": ["$arr"]}), Bson::Boolean(true)),
        (b(doc! {"$isArray": "$a"}), Bson::Boolean(false)),
        (b(doc! {"$concatArrays": ["$arr", [4]]}), Bson::Array(vec![1.into(), 2.into(), 3.into(), 4.into()])),
        (b(doc! {"$slice": ["$arr", 2]}), Bson::Array(vec![1.into(), 2.into()])),
        (b(doc! {"$slice": ["$arr", -1]}), Bson::Array(vec![3.into()])),
        (b(doc! {"$slice": ["$arr", 1, 1]}), Bson::Array(vec![2.into()])),
        (b(doc! {"$reverseArray": "$arr"}), Bson::Array(vec![3.into(), 2.into(), 1.into()])),
        (b(doc! {"$range": [0, 6, 2]}), Bson::Array(vec![0.into(), 2.into(), 4.into()])),
        (b(doc! {"$indexOfArray": ["$arr", 3]}), Bson::Int32(2)),
        (b(doc! {"$sum": "$arr"}), Bson::Int32(6)),
        (b(doc! {"$sum": ["$a", "$b", "x"]}), Bson::Int32(7)),
        (b(doc! {"$avg": "$arr"}), Bson::Double(2.0)),
        (b(doc! {"$max": "$arr"}), Bson::Int32(3)),
        (b(doc! {"$min": ["$a", "$b", null]}), Bson::Int32(2)),
        (
            b(doc! {"$map": {"input": "$arr", "as": "v", "in": {"$multiply": ["$$v", 10]}}}),
            Bson::Array(vec![10.into(), 20.into(), 30.into()]),
        ),
        (
            b(doc! {"$map": {"input": "$arr", "in": {"$add": ["$$this", "$a"]}}}),
            Bson::Array(vec![6.into(), 7.into(), 8.into()]),
        ),
        (
            b(doc! {"$filter": {"input": "$arr", "cond": {"$gte": ["$$this", 2]}}}),
            Bson::Array(vec![2.into(), 3.into()]),
        ),
        (
            b(doc! {"$filter": {"input": "$arr", "as": "x", "cond": true, "limit": 1}}),
            Bson::Array(vec![1.into()]),
        ),
        (
            b(doc! {"$reduce": {"input": "$arr", "initialValue": 0, "in": {"$add": ["$$value", "$$this"]}}}),
            Bson::Int32(6),
        ),
        (b(doc! {"$let": {"vars": {"x": 10}, "in": {"$add": ["$$x", "$a"]}}}), Bson::Int32(15)),
        (b(doc! {"$mergeObjects": [{"a": 1}, {"b": 2}, null, {"a": 3}]}), b(doc! {"a": 3, "b": 2})),
        (b(doc! {"$objectToArray": {"k1": 1}}), Bson::Array(vec![b(doc! {"k": "k1", "v": 1})])),
        (b(doc! {"$arrayToObject": [[["x", 1], ["y", 2]]]}), b(doc! {"x": 1, "y": 2})),
        (b(doc! {"$setUnion": [[1, 2], [2, 3]]}), Bson::Array(vec![1.into(), 2.into(), 3.into()])),
        (b(doc! {"$setIntersection": [[1, 2], [2, 3]]}), Bson::Array(vec![2.into()])),
        (b(doc! {"$setDifference": [[1, 2], [2, 3]]}), Bson::Array(vec![1.into()])),
        (b(doc! {"$setEquals": [[1, 2], [2, 1, 1]]}), Bson::Boolean(true)),
        (b(doc! {"$setIsSubset": [[1], [2, 1]]}), Bson::Boolean(true)),
        (b(doc! {"$allElementsTrue": [[1, true]]}), Bson::Boolean(true)),
        (b(doc! {"$anyElementTrue": [[0, false]]}), Bson::Boolean(false)),
        (b(doc! {"$type": "$a"}), "int".into()),
        (b(doc! {"$type": "$missing"}), "missing".into()),
        (b(doc! {"$type": "$l"}), "long".into()),
        (b(doc! {"$toString": "$a"}), "5".into()),
        (b(doc! {"$toString": "$f"}), "2.5".into()),
        (b(doc! {"$toString": "$date"}), "2023-11-14T22:13:20.123Z".into()),
        (b(doc! {"$toInt": "42"}), Bson::Int32(42)),
        (b(doc! {"$toInt": 4.9}), Bson::Int32(4)),
        (b(doc! {"$toLong": "$a"}), Bson::Int64(5)),
        (b(doc! {"$toDouble": "1.5"}), Bson::Double(1.5)),
        (b(doc! {"$toBool": 0}), Bson::Boolean(false)),
        (b(doc! {"$toDate": 0i64}), Bson::DateTime(bson::DateTime::from_millis(0))),
        (b(doc! {"$convert": {"input": "x", "to": "int", "onError": -1}}), Bson::Int32(-1)),
        (b(doc! {"$convert": {"input": null, "to": "int", "onNull": 0}}), Bson::Int32(0)),
        (b(doc! {"$isNumber": "$s"}), Bson::Boolean(false)),
        (b(doc! {"$year": "$date"}), Bson::Int32(2023)),
        (b(doc! {"$month": "$date"}), Bson::Int32(11)),
        (b(doc! {"$dayOfMonth": "$date"}), Bson::Int32(14)),
        (b(doc! {"$hour": "$date"}), Bson::Int32(22)),
        (b(doc! {"$minute": "$date"}), Bson::Int32(13)),
        (b(doc! {"$second": "$date"}), Bson::Int32(20)),
        (b(doc! {"$millisecond": "$date"}), Bson::Int32(123)),
        (b(doc! {"$dayOfWeek": "$date"}), Bson::Int32(3)),
        (b(doc! {"$dayOfYear": "$date"}), Bson::Int32(318)),
        (b(doc! {"$hour": {"date": "$date", "timezone": "+02:00"}}), Bson::Int32(0)),
        (b(doc! {"$dateToString": {"format": "%Y-%m-%d %H:%M", "date": "$date"}}), "2023-11-14 22:13".into()),
        (b(doc! {"$dateToString": {"date": "$date"}}), "2023-11-14T22:13:20.123Z".into()),
        (b(doc! {"$getField": "a"}), Bson::Int32(5)),
        (
            b(doc! {"$dateAdd": {"startDate": "$date", "unit": "day", "amount": 1}}),
            Bson::DateTime(bson::DateTime::from_millis(1_700_086_400_123)),
        ),
        (
            b(doc! {"$dateSubtract": {"startDate": "$date", "unit": "hour", "amount": 22}}),
            Bson::DateTime(bson::DateTime::from_millis(1_699_920_800_123)),
        ),
        (
            b(doc! {"$dateAdd": {"startDate": {"$toDate": "2024-01-31"}, "unit": "month", "amount": 1}}),
            Bson::DateTime(bson::DateTime::parse_rfc3339_str("2024-02-29T00:00:00Z").unwrap()),
        ),
        (
            b(
                doc! {"$dateDiff": {"startDate": {"$toDate": "2023-12-31"}, "endDate": {"$toDate": "2024-01-01"}, "unit": "year"}},
            ),
            Bson::Int64(1),
        ),
        (
            b(
                doc! {"$dateDiff": {"startDate": {"$toDate": "2024-01-01T23:00:00Z"}, "endDate": {"$toDate": "2024-01-02T01:00:00Z"}, "unit": "day"}},
            ),
            Bson::Int64(1),
        ),
        (b(doc! {"$dateDiff": {"startDate": "$date", "endDate": "$date", "unit": "minute"}}), Bson::Int64(0)),
        (
            b(doc! {"$dateTrunc": {"date": "$date", "unit": "day"}}),
            Bson::DateTime(bson::DateTime::parse_rfc3339_str("2023-11-14T00:00:00Z").unwrap()),
        ),
        (
            b(doc! {"$dateTrunc": {"date": "$date", "unit": "month"}}),
            Bson::DateTime(bson::DateTime::parse_rfc3339_str("2023-11-01T00:00:00Z").unwrap()),
        ),
        (
            b(doc! {"$dateTrunc": {"date": "$date", "unit": "week"}}),
            Bson::DateTime(bson::DateTime::parse_rfc3339_str("2023-11-12T00:00:00Z").unwrap()),
        ),
        (
            b(doc! {"$dateTrunc": {"date": "$date", "unit": "hour", "binSize": 6}}),
            Bson::DateTime(bson::DateTime::parse_rfc3339_str("2023-11-14T18:00:00Z").unwrap()),
        ),
        (
            b(doc! {"$dateFromString": {"dateString": "2023-11-14T22:13:20.123Z"}}),
            Bson::DateTime(bson::DateTime::from_millis(1_700_000_000_123)),
        ),
        (
            b(doc! {"$dateFromString": {"dateString": "14/11/2023", "format": "%d/%m/%Y"}}),
            Bson::DateTime(bson::DateTime::parse_rfc3339_str("2023-11-14T00:00:00Z").unwrap()),
        ),
        (b(doc! {"$dateFromString": {"dateString": "garbage", "onError": "bad"}}), "bad".into()),
        (b(doc! {"x": "$a", "y": {"$add": [1, 1]}, "z": "$missing"}), b(doc! {"x": 5, "y": 2})),
        (Bson::Array(vec!["$a".into(), "$missing".into()]), Bson::Array(vec![5.into(), Bson::Null])),
        (
            b(doc! {"$sortArray": {"input": [3, 1, 2], "sortBy": -1}}),
            Bson::Array(vec![3.into(), 2.into(), 1.into()]),
        ),
    ];
    for (e, want) in table {
        let got = ev(e.clone(), &d).unwrap_or_else(|err| panic!("{e}: {err}"));
        assert_eq!(got, want, "{e}");
    }
}

#[test]
fn expression_errors() {
    let d = doc! {"a": 5, "s": "x", "arr": [1]};
    let table: Vec<(Bson, i32)> = vec![
        (b(doc! {"$nope": 1}), 168),
        (b(doc! {"$add": 1, "$sub": 2}), 15983),
        (b(doc! {"$size": "$a"}), 17124),
        (b(doc! {"$size": [1, 2]}), 16020),
        (b(doc! {"$divide": [1, 0]}), 2),
        (b(doc! {"$mod": [1, 0]}), 16610),
        (b(doc! {"$add": ["$s", 1]}), 16554),
        (b(doc! {"$concat": ["$s", 1]}), 16702),
        (b(doc! {"$in": [1, "$a"]}), 40081),
        (b(doc! {"$arrayElemAt": ["$a", 0]}), 28689),
        (Bson::String("$$undefinedVar".into()), 17276),
        (b(doc! {"$switch": {"branches": []}}), 40066),
        (b(doc! {"$cond": {"if": true, "then": 1}}), 40182),
        (b(doc! {"$map": {"input": "$a", "in": 1}}), 16883),
        (b(doc! {"$toInt": "abc"}), 241),
        (Bson::String("$".into()), 16872),
        (b(doc! {"$hour": {"date": "$$NOW", "timezone": "Mars/Base"}}), 40485),
    ];
    for (e, code) in table {
        let err = ev(e.clone(), &d).unwrap_err();
        assert_eq!(err.code, code, "{e}: {err}");
    }
}

#[test]
fn now_and_remove_variables() {
    let d = doc! {};
    assert!(matches!(ev(Bson::String("$$NOW".into()), &d).unwrap(), Bson::DateTime(_)));
    assert_eq!(ev(Bson::String("$$REMOVE".into()), &d).unwrap(), MISSING);
}

#[test]
fn truthiness() {
    for (v, t) in [
        (Bson::Boolean(false), false),
        (Bson::Null, false),
        (MISSING, false),
        (Bson::Int32(0), false),
        (Bson::Double(0.0), false),
        (Bson::Int64(2), true),
        (Bson::String(String::new()), true),
        (Bson::Array(vec![]), true),
    ] {
        assert_eq!(truthy(&v), t, "{v:?}");
    }
}

#[test]
fn set_field_and_unset_field() {
    let d = doc! {"a": {"x": 1, "y.z": 2, "$p": 3}, "n": null, "s": "str"};
    let ok = |e: Document| ev(b(e), &d).unwrap();
    // Existing fields keep their place, new ones go last; dotted and `$` names are names.
    assert_eq!(
        ok(doc! {"$setField": {"field": "x", "input": "$a", "value": 9}}),
        b(doc! {"x": 9, "y.z": 2, "$p": 3})
    );
    assert_eq!(
        ok(doc! {"$setField": {"field": "y.z", "input": "$a", "value": {"$add": [1, 1]}}}),
        b(doc! {"x": 1, "y.z": 2, "$p": 3})
    );
    assert_eq!(
        ok(doc! {"$setField": {"field": {"$literal": "$p"}, "input": "$a", "value": "v"}}),
        b(doc! {"x": 1, "y.z": 2, "$p": "v"})
    );
    assert_eq!(ok(doc! {"$setField": {"field": "w", "input": {}, "value": "$s"}}), b(doc! {"w": "str"}));
    // `$$REMOVE` and `$unsetField` remove.
    assert_eq!(
        ok(doc! {"$setField": {"field": "x", "input": "$a", "value": "$$REMOVE"}}),
        b(doc! {"y.z": 2, "$p": 3})
    );
    assert_eq!(ok(doc! {"$unsetField": {"field": "y.z", "input": "$a"}}), b(doc! {"x": 1, "$p": 3}));
    // Nullish input: null.
    assert_eq!(ok(doc! {"$setField": {"field": "x", "input": "$n", "value": 1}}), Bson::Null);
    assert_eq!(ok(doc! {"$unsetField": {"field": "x", "input": "$missing"}}), Bson::Null);
    // mongod's refusals.
    let code = |e: Document| ev(b(e), &d).unwrap_err().code;
    assert_eq!(code(doc! {"$setField": {"field": "x", "input": "$s", "value": 1}}), 4161105);
    assert_eq!(code(doc! {"$setField": {"field": "$s", "input": "$a", "value": 1}}), 4161106);
    assert_eq!(code(doc! {"$setField": {"field": 1, "input": "$a", "value": 1}}), 4161107);
    assert_eq!(code(doc! {"$setField": {"field": "x", "input": "$a"}}), 40182);
    assert_eq!(code(doc! {"$unsetField": {"field": "x", "input": "$a", "value": 1}}), 40181);
}

#[test]
fn rand_is_a_fresh_double_in_the_unit_interval() {
    let e = Expr::parse(&b(doc! {"$rand": {}})).unwrap();
    assert!(!e.is_constant());
    let mut ctx = EvalCtx::new();
    let vals: Vec<f64> = (0..50)
        .map(|_| match e.eval(&Document::new(), &mut ctx).unwrap() {
            Bson::Double(f) => f,
            other => panic!("{other}"),
        })
        .collect();
    assert!(vals.iter().all(|f| (0.0..1.0).contains(f)));
    assert!(vals.windows(2).any(|w| w[0] != w[1]));
    assert_eq!(Expr::parse(&b(doc! {"$rand": {"x": 1}})).unwrap_err().code, 3040501);
}

/// Every operator the parser accepts has a function in the dispatch tables (the short-circuiting
/// ones `eval_op` evaluates itself excepted), and no name has two.
#[test]
fn every_parsed_operator_has_a_function() {
    let lazy = ["$and", "$or", "$cond", "$ifNull"];
    for (n, ..) in super::parse::POSITIONAL.iter().filter(|(n, ..)| !lazy.contains(n)) {
        assert!(dispatch(&POSITIONAL_OPS, n).is_ok(), "{n}");
    }
    for n in super::parse::NAMED.iter().map(|(n, ..)| *n).chain(super::parse::DATE_PARTS.iter().copied()) {
        assert!(dispatch(&NAMED_OPS, n).is_ok(), "{n}");
    }
    for table in [
        POSITIONAL_OPS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        NAMED_OPS.iter().map(|(n, _)| *n).collect(),
    ] {
        assert!(table.windows(2).all(|w| w[0] != w[1]), "{table:?}");
    }
    assert!(dispatch(&POSITIONAL_OPS, "$noSuchOperator").is_err());
}
