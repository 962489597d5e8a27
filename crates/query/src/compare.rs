//! MongoDB's total order over BSON values.
//!
//! Values of different types compare by their canonical type order
//! (MinKey < Undefined < Null < Numbers < Symbol/String < Object < Array < BinData < ObjectId <
//! Boolean < Date < Timestamp < RegEx < DBPointer < JavaScript < JavaScriptWithScope < MaxKey);
//! numbers compare by value across Int32/Int64/Double/Decimal128 (Decimal128 via `f64`, best
//! effort); NaN sorts below every other number and equals itself. Documents compare field by
//! field (type order, then field name, then value), arrays element by element, shorter first.
//! The order is total: [`cmp_bson`] is antisymmetric and transitive.

use std::cmp::Ordering;

use bson::{Bson, Document};

/// The canonical type order of a value, as MongoDB's `canonicalizeBSONType` (shifted so MinKey
/// is 0). Values with different orders compare by order alone.
pub fn canonical_type_order(b: &Bson) -> u8 {
    match b {
        Bson::MinKey => 0,
        Bson::Undefined => 2,
        Bson::Null => 5,
        Bson::Double(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Decimal128(_) => 10,
        Bson::String(_) | Bson::Symbol(_) => 15,
        Bson::Document(_) => 20,
        Bson::Array(_) => 25,
        Bson::Binary(_) => 30,
        Bson::ObjectId(_) => 35,
        Bson::Boolean(_) => 40,
        Bson::DateTime(_) => 45,
        Bson::Timestamp(_) => 47,
        Bson::RegularExpression(_) => 50,
        Bson::DbPointer(_) => 55,
        Bson::JavaScriptCode(_) => 60,
        Bson::JavaScriptCodeWithScope(_) => 65,
        Bson::MaxKey => 127,
    }
}

/// A number as MongoDB sees it, for cross-type comparison and arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
}

/// The numeric value of a BSON number (Decimal128 converted to `f64`, best effort).
pub(crate) fn as_num(b: &Bson) -> Option<Num> {
    match b {
        Bson::Int32(i) => Some(Num::Int(i64::from(*i))),
        Bson::Int64(i) => Some(Num::Int(*i)),
        Bson::Double(d) => Some(Num::Float(*d)),
        Bson::Decimal128(d) => Some(Num::Float(decimal_to_f64(d))),
        _ => None,
    }
}

/// Best-effort conversion of a Decimal128 to `f64` through its string form.
pub(crate) fn decimal_to_f64(d: &bson::Decimal128) -> f64 {
    let s = d.to_string();
    match s.as_str() {
        "NaN" | "-NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        _ => s.parse::<f64>().unwrap_or(f64::NAN),
    }
}

/// Compares an integer with a float exactly (no precision loss for large integers).
fn cmp_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    // i64 range as f64: [-2^63, 2^63).
    if f >= 9_223_372_036_854_775_808.0 {
        return Ordering::Less;
    }
    if f < -9_223_372_036_854_775_808.0 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    // t is within i64 range here.
    let ti = t as i64;
    match i.cmp(&ti) {
        Ordering::Equal => {
            let frac = f - t;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

fn cmp_float(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        // -0.0 == 0.0 here, as in MongoDB.
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Numeric comparison across representations.
pub(crate) fn cmp_num(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Float(x), Num::Float(y)) => cmp_float(x, y),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).reverse(),
    }
}

/// MongoDB's comparison of two BSON values, strings compared under the thread's collation
/// ([`crate::collation::scoped`]; bytewise without one): what queries, sorts, groups and
/// expressions use.
pub fn cmp_bson(a: &Bson, b: &Bson) -> Ordering {
    cmp_values(a, b, true)
}

/// [`cmp_bson`] with strings always compared bytewise, whatever the thread's collation: for
/// storage structures (the `_id` map, index entries, whose collated strings are already
/// collation keys), which must not change order with the command that reads them.
pub fn cmp_bson_binary(a: &Bson, b: &Bson) -> Ordering {
    cmp_values(a, b, false)
}

fn cmp_values(a: &Bson, b: &Bson, coll: bool) -> Ordering {
    let (ta, tb) = (canonical_type_order(a), canonical_type_order(b));
    if ta != tb {
        return ta.cmp(&tb);
    }
    match (a, b) {
        (Bson::String(x) | Bson::Symbol(x), Bson::String(y) | Bson::Symbol(y)) => {
            if coll {
                crate::collation::cmp_str(x, y)
            } else {
                x.as_bytes().cmp(y.as_bytes())
            }
        }
        (Bson::Document(x), Bson::Document(y)) => cmp_docs(x, y, coll),
        (Bson::Array(x), Bson::Array(y)) => cmp_arrays(x, y, coll),
        (Bson::Binary(x), Bson::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then_with(|| u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(&y.bytes)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.timestamp_millis().cmp(&y.timestamp_millis()),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => (x.time, x.increment).cmp(&(y.time, y.increment)),
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => {
            x.pattern.cmp(&y.pattern).then_with(|| x.options.cmp(&y.options))
        }
        (Bson::JavaScriptCode(x), Bson::JavaScriptCode(y)) => x.cmp(y),
        (Bson::JavaScriptCodeWithScope(x), Bson::JavaScriptCodeWithScope(y)) => {
            x.code.cmp(&y.code).then_with(|| cmp_docs(&x.scope, &y.scope, coll))
        }
        (Bson::DbPointer(x), Bson::DbPointer(y)) => {
            // DbPointer's fields are private in bson 2.x; compare through the debug form,
            // which is deterministic (namespace then id).
            format!("{x:?}").cmp(&format!("{y:?}"))
        }
        _ => match (as_num(a), as_num(b)) {
            (Some(x), Some(y)) => cmp_num(x, y),
            // Same canonical order with no payload: MinKey, MaxKey, Null, Undefined.
            _ => Ordering::Equal,
        },
    }
}

/// Field-by-field comparison of two documents: per element, canonical type, then field name,
/// then value; a document that is a prefix of the other is smaller.
pub fn cmp_documents(a: &Document, b: &Document) -> Ordering {
    cmp_docs(a, b, true)
}

/// [`cmp_documents`]; field names are always compared bytewise (as mongod does), values under
/// the collation when `coll`.
fn cmp_docs(a: &Document, b: &Document, coll: bool) -> Ordering {
    let mut ia = a.iter();
    let mut ib = b.iter();
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((ka, va)), Some((kb, vb))) => {
                let o = canonical_type_order(va)
                    .cmp(&canonical_type_order(vb))
                    .then_with(|| ka.as_bytes().cmp(kb.as_bytes()))
                    .then_with(|| cmp_values(va, vb, coll));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

fn cmp_arrays(a: &[Bson], b: &[Bson], coll: bool) -> Ordering {
    for (x, y) in a.iter().zip(b.iter()) {
        let o = cmp_values(x, y, coll);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// True when two values are equal under [`cmp_bson`] (e.g. `Int32(1)` equals `Double(1.0)`).
pub fn bson_eq(a: &Bson, b: &Bson) -> bool {
    cmp_bson(a, b) == Ordering::Equal
}

/// Appends a string key to `out` such that two values get the same key exactly when
/// [`bson_eq`] holds (numbers are normalized across types; strings are collation keys under the
/// thread's collation). Used to hash group keys and sets.
pub fn canonical_key(b: &Bson, out: &mut String) {
    use std::fmt::Write;
    match b {
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => match as_num(b) {
            Some(Num::Int(i)) => {
                let _ = write!(out, "n{i};");
            }
            Some(Num::Float(f)) => {
                if f.is_nan() {
                    out.push_str("nNaN;");
                } else if f.fract() == 0.0
                    && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
                {
                    let _ = write!(out, "n{};", f as i64);
                } else {
                    let _ = write!(out, "n{f:e};");
                }
            }
            None => {}
        },
        Bson::String(s) | Bson::Symbol(s) => crate::collation::push_str_key(s, out),
        Bson::Document(d) => {
            out.push('{');
            for (k, v) in d {
                let _ = write!(out, "{}:{k}=", k.len());
                canonical_key(v, out);
            }
            out.push('}');
        }
        Bson::Array(a) => {
            out.push('[');
            for v in a {
                canonical_key(v, out);
            }
            out.push(']');
        }
        Bson::Null => out.push_str("null;"),
        Bson::Undefined => out.push_str("undef;"),
        Bson::MinKey => out.push_str("min;"),
        Bson::MaxKey => out.push_str("max;"),
        Bson::Boolean(x) => {
            let _ = write!(out, "b{x};");
        }
        Bson::ObjectId(o) => {
            let _ = write!(out, "o{o};");
        }
        Bson::DateTime(d) => {
            let _ = write!(out, "d{};", d.timestamp_millis());
        }
        Bson::Timestamp(t) => {
            let _ = write!(out, "t{},{};", t.time, t.increment);
        }
        other => {
            let _ = write!(out, "x{}:{other:?};", canonical_type_order(other));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::{Binary, DateTime, Decimal128, Timestamp, doc, oid::ObjectId, spec::BinarySubtype};
    use proptest::prelude::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Bson {
        Bson::Decimal128(Decimal128::from_str(s).unwrap())
    }

    #[test]
    fn type_order_ladder() {
        let ladder = vec![
            Bson::MinKey,
            Bson::Null,
            Bson::Int32(-5),
            Bson::Double(3.5),
            Bson::Int64(1 << 40),
            Bson::String("".into()),
            Bson::String("abc".into()),
            Bson::Document(doc! {}),
            Bson::Document(doc! {"a": 1}),
            Bson::Array(vec![]),
            Bson::Array(vec![Bson::Int32(1)]),
            Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: vec![1] }),
            Bson::ObjectId(ObjectId::from_bytes([0; 12])),
            Bson::ObjectId(ObjectId::from_bytes([1; 12])),
            Bson::Boolean(false),
            Bson::Boolean(true),
            Bson::DateTime(DateTime::from_millis(-1)),
            Bson::DateTime(DateTime::from_millis(5)),
            Bson::Timestamp(Timestamp { time: 1, increment: 2 }),
            Bson::RegularExpression(bson::Regex { pattern: "a".into(), options: "".into() }),
            Bson::MaxKey,
        ];
        for (i, a) in ladder.iter().enumerate() {
            for (j, b) in ladder.iter().enumerate() {
                assert_eq!(cmp_bson(a, b), i.cmp(&j), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn numbers_across_types() {
        let table: Vec<(Bson, Bson, Ordering)> = vec![
            (Bson::Int32(1), Bson::Double(1.0), Ordering::Equal),
            (Bson::Int32(1), Bson::Int64(1), Ordering::Equal),
            (Bson::Int64(2), Bson::Double(1.5), Ordering::Greater),
            (Bson::Double(f64::NAN), Bson::Double(f64::NEG_INFINITY), Ordering::Less),
            (Bson::Double(f64::NAN), Bson::Double(f64::NAN), Ordering::Equal),
            (Bson::Double(-0.0), Bson::Int32(0), Ordering::Equal),
            (Bson::Int64(i64::MAX), Bson::Double(9.3e18), Ordering::Less),
            (Bson::Int64(i64::MAX), Bson::Double(9.2e18), Ordering::Greater),
            (Bson::Int64(9_007_199_254_740_993), Bson::Double(9_007_199_254_740_992.0), Ordering::Greater),
            (dec("1.5"), Bson::Double(1.5), Ordering::Equal),
            (dec("2"), Bson::Int32(3), Ordering::Less),
            (Bson::Int32(-1), Bson::Double(-0.5), Ordering::Less),
        ];
        for (a, b, o) in table {
            assert_eq!(cmp_bson(&a, &b), o, "{a:?} vs {b:?}");
            assert_eq!(cmp_bson(&b, &a), o.reverse(), "{b:?} vs {a:?}");
        }
    }

    #[test]
    fn strings_and_symbols_share_order() {
        assert_eq!(cmp_bson(&Bson::Symbol("b".into()), &Bson::String("a".into())), Ordering::Greater);
        assert_eq!(cmp_bson(&Bson::String("B".into()), &Bson::String("a".into())), Ordering::Less);
    }

    #[test]
    fn documents_field_by_field() {
        let table = vec![
            (doc! {"a": 1}, doc! {"a": 2}, Ordering::Less),
            (doc! {"a": 1}, doc! {"b": 0}, Ordering::Less),
            (doc! {"a": 1}, doc! {"a": 1, "b": 1}, Ordering::Less),
            (doc! {"a": "x"}, doc! {"a": 100}, Ordering::Greater),
            (doc! {"a": 1.0}, doc! {"a": 1}, Ordering::Equal),
        ];
        for (a, b, o) in table {
            assert_eq!(cmp_documents(&a, &b), o, "{a} vs {b}");
        }
    }

    #[test]
    fn arrays_element_by_element() {
        let a = Bson::Array(vec![1.into(), 2.into()]);
        let b = Bson::Array(vec![1.into(), 3.into()]);
        let c = Bson::Array(vec![1.into()]);
        assert_eq!(cmp_bson(&a, &b), Ordering::Less);
        assert_eq!(cmp_bson(&c, &a), Ordering::Less);
    }

    #[test]
    fn canonical_key_agrees_with_eq() {
        let vals = vec![
            Bson::Int32(1),
            Bson::Double(1.0),
            Bson::Int64(1),
            Bson::Double(1.5),
            Bson::String("1".into()),
            Bson::Document(doc! {"a": 1}),
            Bson::Document(doc! {"a": 1.0}),
            Bson::Array(vec![1.into()]),
            Bson::Null,
        ];
        for a in &vals {
            for b in &vals {
                let (mut ka, mut kb) = (String::new(), String::new());
                canonical_key(a, &mut ka);
                canonical_key(b, &mut kb);
                assert_eq!(ka == kb, bson_eq(a, b), "{a:?} {b:?}");
            }
        }
    }

    fn arb_leaf() -> impl Strategy<Value = Bson> {
        prop_oneof![
            Just(Bson::Null),
            Just(Bson::MinKey),
            Just(Bson::MaxKey),
            any::<i32>().prop_map(Bson::Int32),
            any::<i64>().prop_map(Bson::Int64),
            any::<f64>().prop_map(Bson::Double),
            (-5i32..5).prop_map(Bson::Int32),
            (-5i64..5).prop_map(|i| Bson::Double(i as f64 / 2.0)),
            "[a-c]{0,3}".prop_map(Bson::String),
            any::<bool>().prop_map(Bson::Boolean),
            any::<i64>().prop_map(|m| Bson::DateTime(DateTime::from_millis(m))),
        ]
    }

    fn arb_bson() -> impl Strategy<Value = Bson> {
        arb_leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
                prop::collection::vec(("[ab]", inner), 0..3).prop_map(|kvs| {
                    let mut d = Document::new();
                    for (k, v) in kvs {
                        d.insert(k, v);
                    }
                    Bson::Document(d)
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn antisymmetric(a in arb_bson(), b in arb_bson()) {
            prop_assert_eq!(cmp_bson(&a, &b), cmp_bson(&b, &a).reverse());
        }

        #[test]
        fn reflexive(a in arb_bson()) {
            prop_assert_eq!(cmp_bson(&a, &a), Ordering::Equal);
        }

        #[test]
        fn transitive(a in arb_bson(), b in arb_bson(), c in arb_bson()) {
            let mut v = [a, b, c];
            v.sort_by(cmp_bson);
            prop_assert_ne!(cmp_bson(&v[0], &v[1]), Ordering::Greater);
            prop_assert_ne!(cmp_bson(&v[1], &v[2]), Ordering::Greater);
            prop_assert_ne!(cmp_bson(&v[0], &v[2]), Ordering::Greater);
        }

        #[test]
        fn canonical_key_matches_equality(a in arb_bson(), b in arb_bson()) {
            let (mut ka, mut kb) = (String::new(), String::new());
            canonical_key(&a, &mut ka);
            canonical_key(&b, &mut kb);
            prop_assert_eq!(ka == kb, bson_eq(&a, &b));
        }
    }
}
