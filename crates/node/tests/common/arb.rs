//! Random command documents for the property tests that throw garbage at the node
//! (`wire_raw.rs` over TCP, `dispatch_inproc.rs` in process).

use bson::{Bson, Document, doc};
use proptest::prelude::*;

/// Field names a command body may carry, including secrets that must be redacted and keys that steer
/// the command parsers into their deeper paths.
const FIELDS: &str = "filter|pipeline|documents|updates|deletes|q|u|op|millis|cursor|batchSize|lsid|maxTimeMS|key|query|sort|projection|limit|skip|indexes|index|roles|pwd|mechanism|payload|conversationId|to|update|remove|new|upsert|fields|explain|\\$all";

/// Any BSON value: scalars, binaries, and small nested arrays and documents with operator-like keys.
pub fn arb_value() -> impl Strategy<Value = Bson> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<f64>().prop_map(Bson::Double),
        any::<bool>().prop_map(Bson::Boolean),
        "[a-z$.]{0,8}".prop_map(Bson::String),
        Just(Bson::Null),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(|b| Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: b
        })),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
            prop::collection::vec(("[a-z$]{1,6}|q|u|filter|pipeline|\\$match|\\$set|\\$group|\\$sort|_id|op|millis|documents|updates|deletes|cursor|lsid|id|key|user|db", inner), 0..4)
                .prop_map(|kv| Bson::Document(kv.into_iter().collect())),
        ]
    })
}

/// Every command name and alias of the node's command table, and one unknown name.
pub fn command_names() -> Vec<&'static str> {
    let mut names = docplane_node::cmd::table::names();
    names.push("nope");
    names
}

/// A command named from `names` with a random first value and up to five more random fields; no `$db`.
pub fn arb_command(names: Vec<&'static str>) -> impl Strategy<Value = Document> {
    (prop::sample::select(names), arb_value(), prop::collection::vec((FIELDS, arb_value()), 0..6)).prop_map(
        |(name, first, rest)| {
            let mut d = doc! {name: first};
            for (k, v) in rest {
                d.insert(k, v);
            }
            d
        },
    )
}
