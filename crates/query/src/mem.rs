//! Per-operation memory limits, as mongod applies them: a blocking `$sort` (or a find's
//! in-memory sort) and a `$group` may hold at most [`MAX_BLOCKING_BYTES`] (mongod's
//! `internalQueryMaxBlockingSortMemoryUsageBytes` and `internalDocumentSourceGroupMaxMemoryBytes`,
//! both 100 MiB); past it they fail with 292 QueryExceededMemoryLimitNoDiskUseAllowed. Sizes are
//! the BSON sizes of what the stage keeps, computed by walking the values (no serialization).

use bson::{Bson, Document};

use crate::error::{CommandError, Result};

/// The memory a blocking stage may use (100 MiB).
pub const MAX_BLOCKING_BYTES: usize = 100 * 1024 * 1024;

/// The BSON size of `d`.
pub fn doc_size(d: &Document) -> usize {
    5 + d.iter().map(|(k, v)| 2 + k.len() + value_size(v)).sum::<usize>()
}

/// The BSON size of `v`'s value part (no type byte or key).
pub fn value_size(v: &Bson) -> usize {
    match v {
        Bson::Double(_) | Bson::Int64(_) | Bson::DateTime(_) | Bson::Timestamp(_) => 8,
        Bson::Int32(_) => 4,
        Bson::Boolean(_) => 1,
        Bson::Null | Bson::Undefined | Bson::MinKey | Bson::MaxKey => 0,
        Bson::String(s) | Bson::JavaScriptCode(s) | Bson::Symbol(s) => 5 + s.len(),
        Bson::Document(d) => doc_size(d),
        Bson::Array(a) => {
            // Keys "0", "1", ...: digits plus the type byte and the terminator.
            5 + a.iter().enumerate().map(|(i, x)| 2 + digits(i) + value_size(x)).sum::<usize>()
        }
        Bson::Binary(b) => 5 + b.bytes.len(),
        Bson::ObjectId(_) => 12,
        Bson::RegularExpression(r) => 2 + r.pattern.len() + r.options.len(),
        Bson::Decimal128(_) => 16,
        Bson::JavaScriptCodeWithScope(c) => 14 + c.code.len() + doc_size(&c.scope),
        Bson::DbPointer(_) => 17,
    }
}

fn digits(mut i: usize) -> usize {
    let mut n = 1;
    while i >= 10 {
        i /= 10;
        n += 1;
    }
    n
}

/// mongod's error for a blocking sort over the limit.
pub fn sort_exceeded() -> CommandError {
    CommandError::new(
        292,
        "QueryExceededMemoryLimitNoDiskUseAllowed",
        format!(
            "Sort exceeded memory limit of {MAX_BLOCKING_BYTES} bytes, but did not opt in to external \
             sorting. Aborting operation. Pass allowDiskUse:true to opt in."
        ),
    )
}

/// mongod's error for a `$group` over the limit.
pub fn group_exceeded() -> CommandError {
    CommandError::new(
        292,
        "QueryExceededMemoryLimitNoDiskUseAllowed",
        "Exceeded memory limit for $group, but didn't allow external sort. Pass allowDiskUse:true to opt in.",
    )
}

/// Fails with [`sort_exceeded`] when documents of these sizes exceed the limit.
pub fn check_sort<'a>(docs: impl IntoIterator<Item = &'a Document>) -> Result<()> {
    let mut total = 0usize;
    for (i, d) in docs.into_iter().enumerate() {
        crate::interrupt::poll_every(i, 1024)?;
        total += doc_size(d);
        if total > MAX_BLOCKING_BYTES {
            return Err(sort_exceeded());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bson::{doc, oid::ObjectId};

    use super::*;

    #[test]
    fn sizes_equal_the_serialized_bson() {
        let d = doc! {
            "_id": ObjectId::new(), "s": "héllo", "n": 1, "l": 2i64, "f": 1.5, "b": true, "z": null,
            "a": (0..15).map(Bson::Int32).collect::<Vec<_>>(), "d": {"x": {"y": [1, "two", {"t": 3}]}},
            "dt": bson::DateTime::now(), "r": bson::Regex { pattern: "a.*".into(), options: "i".into() },
            "bin": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1, 2, 3] },
        };
        assert_eq!(doc_size(&d), bson::to_vec(&d).unwrap().len());
    }

    #[test]
    fn sort_limit() {
        let big = doc! {"s": "x".repeat(1024 * 1024)};
        let docs: Vec<Document> = (0..99).map(|_| big.clone()).collect();
        assert!(check_sort(&docs).is_ok());
        let docs: Vec<Document> = (0..101).map(|_| big.clone()).collect();
        assert_eq!(check_sort(&docs).unwrap_err().code, 292);
    }
}
