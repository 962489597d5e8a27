use std::cmp::Ordering;
use std::sync::Arc;

use bson::{Bson, doc};

use super::*;
use crate::{Filter, SortSpec, canonical_key, cmp_bson, cmp_bson_binary};

fn collated(d: bson::Document) -> Arc<Collation> {
    match parse(Some(&Bson::Document(d))).expect("valid collation") {
        Requested::Collated(c) => c,
        other => panic!("not a collation: {other:?}"),
    }
}

fn code(d: bson::Document) -> i32 {
    parse(Some(&Bson::Document(d))).expect_err("refused").code
}

#[test]
fn specs_are_validated_with_mongods_codes() {
    assert_eq!(code(doc! {"locale": "en", "foo": 1}), 40415);
    assert_eq!(code(doc! {"strength": 2}), 40414);
    assert_eq!(code(doc! {"locale": 1}), 14);
    assert_eq!(code(doc! {"locale": "en", "caseLevel": "yes"}), 14);
    assert_eq!(code(doc! {"locale": "en", "strength": "2"}), 14);
    assert_eq!(code(doc! {"locale": "en", "strength": 0}), 51024);
    assert_eq!(code(doc! {"locale": "en", "strength": 6}), 51024);
    assert_eq!(code(doc! {"locale": "en", "caseFirst": "first"}), 2);
    assert_eq!(code(doc! {"locale": "en", "alternate": "ignore"}), 2);
    assert_eq!(code(doc! {"locale": "en", "maxVariable": "symbol"}), 2);
    assert_eq!(code(doc! {"locale": "xx_invalid"}), 2);
    assert_eq!(code(doc! {"locale": ""}), 2);
    assert_eq!(code(doc! {"locale": "en", "version": "1.0"}), 2);
    assert_eq!(code(doc! {"locale": "simple", "strength": 2}), 2);
    // What ICU4X cannot do is refused, not approximated.
    assert_eq!(code(doc! {"locale": "en", "backwards": true}), 115);
    assert_eq!(code(doc! {"locale": "fr_CA", "backwards": false}), 115);
    assert_eq!(code(doc! {"locale": "en_US_POSIX"}), 115);
    assert_eq!(parse(Some(&Bson::Int32(1))).expect_err("type").code, 14);
}

#[test]
fn simple_empty_and_absent() {
    assert_eq!(parse(None).ok(), Some(Requested::Default));
    assert_eq!(parse(Some(&Bson::Null)).ok(), Some(Requested::Default));
    assert_eq!(parse(Some(&Bson::Document(doc! {}))).ok(), Some(Requested::Default));
    assert_eq!(parse(Some(&Bson::Document(doc! {"locale": "simple"}))).ok(), Some(Requested::Simple));
    let c = collated(doc! {"locale": "fr"});
    assert!(Requested::Simple.resolve(Some(&c)).is_none());
    assert!(Requested::Default.resolve(Some(&c)).is_some());
}

#[test]
fn normalized_spec_is_mongods() {
    let c = collated(doc! {"strength": 2, "locale": "en_US"});
    assert_eq!(
        c.spec(),
        &doc! {
            "locale": "en_US", "caseLevel": false, "caseFirst": "off", "strength": 2,
            "numericOrdering": false, "alternate": "non-ignorable", "maxVariable": "punct",
            "normalization": false, "backwards": false, "version": "57.1",
        }
    );
    assert_eq!(collated(doc! {"locale": "fr_CA"}).spec().get_bool("backwards").ok(), Some(true));
    let c =
        collated(doc! {"locale": "en", "caseFirst": "upper", "alternate": "shifted", "maxVariable": "space"});
    assert_eq!(c.spec().get_str("caseFirst").ok(), Some("upper"));
    assert_eq!(c.spec().get_str("alternate").ok(), Some("shifted"));
    assert_eq!(c.spec().get_str("maxVariable").ok(), Some("space"));
    assert_eq!(c.spec().get_i32("strength").ok(), Some(3));
}

#[test]
fn comparisons_follow_the_scoped_collation() {
    let (a, b) = (Bson::String("abc".into()), Bson::String("ABC".into()));
    assert_ne!(cmp_bson(&a, &b), Ordering::Equal);
    let c = collated(doc! {"locale": "en_US", "strength": 2});
    scoped(Some(c.clone()), || {
        assert_eq!(cmp_bson(&a, &b), Ordering::Equal);
        // Inside documents and arrays too; field names stay binary.
        assert_eq!(
            cmp_bson(&Bson::Document(doc! {"x": "abc"}), &Bson::Document(doc! {"x": "ABC"})),
            Ordering::Equal
        );
        assert_ne!(cmp_bson(&Bson::Document(doc! {"x": 1}), &Bson::Document(doc! {"X": 1})), Ordering::Equal);
        assert_ne!(cmp_bson_binary(&a, &b), Ordering::Equal);
        let (mut ka, mut kb) = (String::new(), String::new());
        canonical_key(&a, &mut ka);
        canonical_key(&b, &mut kb);
        assert_eq!(ka, kb);
        let f = Filter::parse(&doc! {"name": "abc", "n": {"$in": ["X", "y"]}}).expect("filter");
        assert!(f.matches(&doc! {"name": "ABC", "n": "x"}));
        assert!(!f.matches(&doc! {"name": "abd", "n": "x"}));
        // Regexes are not collated.
        let f = Filter::parse(&doc! {"name": {"$regex": "^a"}}).expect("filter");
        assert!(!f.matches(&doc! {"name": "ABC"}));
        assert!(current().is_some());
    });
    assert!(current().is_none());
    assert_ne!(cmp_bson(&a, &b), Ordering::Equal);
}

#[test]
fn numeric_ordering_sorts_digits_by_value() {
    let c = collated(doc! {"locale": "en", "numericOrdering": true});
    let mut docs = vec![doc! {"s": "10"}, doc! {"s": "9"}, doc! {"s": "100"}];
    let spec = SortSpec::parse(&doc! {"s": 1}).expect("sort");
    scoped(Some(c.clone()), || spec.sort(&mut docs));
    let order: Vec<&str> = docs.iter().filter_map(|d| d.get_str("s").ok()).collect();
    assert_eq!(order, ["9", "10", "100"]);
    spec.sort(&mut docs);
    let order: Vec<&str> = docs.iter().filter_map(|d| d.get_str("s").ok()).collect();
    assert_eq!(order, ["10", "100", "9"]);
    // Keys order as the collation does.
    assert!(c.key("9") < c.key("10"));
}

#[test]
fn index_values_are_keys_everywhere() {
    let c = collated(doc! {"locale": "en", "strength": 1});
    let v = Bson::Document(doc! {"a": ["Ä", 1], "b": "x"});
    let k = c.index_value(&v);
    assert_eq!(k, c.index_value(&Bson::Document(doc! {"a": ["a", 1], "b": "X"})));
    assert!(has_string(&v));
    assert!(!has_string(&Bson::Array(vec![Bson::Int32(1)])));
}
