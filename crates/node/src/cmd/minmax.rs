//! find's `min` and `max`: bounds on the hinted index's keys (mongod's `min()` / `max()`).
//!
//! As in mongod, they need a `hint` naming the index, by its key pattern or by its name (51173
//! without one; a name that names no index of the collection 2 BadValue, as any hint), and each
//! must list exactly that pattern's fields, in order (51174); `min` is inclusive, `max`
//! exclusive, compared in the index's order (a descending field compares reversed). The node
//! applies them to the documents the filter and sort selected, before `skip`, `limit` and the
//! projection. A document whose key field holds an array (a multikey entry, which mongod bounds
//! per element) is refused rather than bounded on a guess. String bounds compare under the
//! query's collation, which must be the hinted index's (51174 otherwise).

use std::cmp::Ordering;

use bson::{Bson, Document};
use docplane_engine::{Engine, FindQuery, QueryOutput};
use docplane_query::{CommandError, Interrupt, cmp_bson, get_path_exact};

/// The bounds of one find.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// The hinted key pattern: (path, descending).
    pattern: Vec<(String, bool)>,
    min: Option<Vec<Bson>>,
    max: Option<Vec<Bson>>,
}

fn bound<'a>(cmd: &'a Document, key: &str) -> Result<Option<&'a Document>, CommandError> {
    match cmd.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Document(d)) if d.is_empty() => Ok(None),
        Some(Bson::Document(d)) => Ok(Some(d)),
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field 'find.{key}' is the wrong type '{}', expected type 'object'",
            super::util::type_name(other)
        ))),
    }
}

/// Parses `min` / `max` against the command's `hint` (a name is resolved to its key pattern
/// among the indexes of `db.coll` in `engine`); `None` when neither is given.
pub fn parse(cmd: &Document, engine: &Engine, db: &str, coll: &str) -> Result<Option<Bounds>, CommandError> {
    let (min, max) = (bound(cmd, "min")?, bound(cmd, "max")?);
    if min.is_none() && max.is_none() {
        return Ok(None);
    }
    let named;
    let hint = match cmd.get("hint") {
        Some(Bson::Document(h)) if !h.is_empty() => h,
        Some(Bson::String(name)) => {
            named = key_of_index(engine, db, coll, name)?;
            &named
        }
        _ => {
            return Err(CommandError::location(
                51173,
                "When using min()/max() a hint of which index to use must be specified",
            ));
        }
    };
    let pattern: Vec<(String, bool)> =
        hint.iter().map(|(k, v)| (k.clone(), super::util::as_i64(v).is_some_and(|n| n < 0))).collect();
    let values = |d: &Document| -> Result<Vec<Bson>, CommandError> {
        let same = d.len() == pattern.len() && d.keys().zip(&pattern).all(|(k, (p, _))| k == p);
        if !same {
            return Err(CommandError::location(51174, "The index chosen is not equal to min/max"));
        }
        Ok(d.values().cloned().collect())
    };
    Ok(Some(Bounds { min: min.map(values).transpose()?, max: max.map(values).transpose()?, pattern }))
}

/// The key pattern of the index `name` (2 BadValue when there is none, as any hint naming no
/// index).
fn key_of_index(engine: &Engine, db: &str, coll: &str, name: &str) -> Result<Document, CommandError> {
    let indexes = engine.list_indexes(db, coll).unwrap_or_default();
    indexes
        .into_iter()
        .find(|i| i.get_str("name") == Ok(name))
        .and_then(|i| i.get_document("key").ok().cloned())
        .ok_or_else(|| CommandError::bad_value("hint provided does not correspond to an existing index"))
}

impl Bounds {
    fn compare(&self, key: &[Bson], bound: &[Bson]) -> Ordering {
        for ((k, b), (_, desc)) in key.iter().zip(bound).zip(&self.pattern) {
            let o = cmp_bson(k, b);
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// mongod compares min/max in the hinted index's order, so string bounds need the index's
    /// collation to be the query's (compared under the query's here): otherwise 51174, as
    /// mongod refuses an index whose collation differs for such bounds.
    fn check_collation(&self, e: &Engine, db: &str, coll: &str) -> Result<(), CommandError> {
        let stringy = [&self.min, &self.max]
            .into_iter()
            .flatten()
            .any(|vs| vs.iter().any(docplane_query::collation::has_string));
        if !stringy {
            return Ok(());
        }
        let same_pattern = |key: &Document| {
            key.len() == self.pattern.len()
                && key.iter().zip(&self.pattern).all(|((k, v), (p, desc))| {
                    k == p && super::util::as_i64(v).is_some_and(|n| (n < 0) == *desc)
                })
        };
        let listed = e.list_indexes(db, coll).unwrap_or_default();
        let index_collation = listed
            .iter()
            .find(|ix| ix.get_document("key").is_ok_and(same_pattern))
            .and_then(|ix| ix.get_document("collation").ok());
        let query_collation = docplane_query::collation::current();
        if index_collation != query_collation.as_ref().map(|c| c.spec()) {
            return Err(CommandError::location(
                51174,
                "The index chosen is not equal to min/max (its collation is not the query's)",
            ));
        }
        Ok(())
    }

    /// Whether `doc`'s key lies within the bounds.
    pub fn contains(&self, doc: &Document) -> Result<bool, CommandError> {
        let mut key = Vec::with_capacity(self.pattern.len());
        for (path, _) in &self.pattern {
            match get_path_exact(doc, path) {
                Some(Bson::Array(_)) => {
                    return Err(CommandError::command_not_supported(format!(
                        "min/max over the array at '{path}' (a multikey index) is not supported by docplane's node"
                    )));
                }
                Some(v) => key.push(v.clone()),
                None => key.push(Bson::Null),
            }
        }
        let above = self.min.as_ref().is_none_or(|m| self.compare(&key, m) != Ordering::Less);
        let below = self.max.as_ref().is_none_or(|m| self.compare(&key, m) == Ordering::Less);
        Ok(above && below)
    }
}

/// Runs `q` with the bounds: the filter and sort on the engine (with the hint), then the bounds,
/// `skip`, `limit` and the projection here.
pub fn find(
    e: &Engine,
    db: &str,
    coll: &str,
    q: &FindQuery,
    b: &Bounds,
    intr: &dyn Interrupt,
) -> Result<QueryOutput, CommandError> {
    b.check_collation(e, db, coll)?;
    let wide = FindQuery { projection: None, skip: 0, limit: 0, ..q.clone() };
    let mut out = e.find(db, coll, &wide, intr)?;
    let mut kept = Vec::new();
    let mut skip = q.skip;
    for (i, d) in std::mem::take(&mut out.docs).into_iter().enumerate() {
        if i % docplane_query::interrupt::CHECK_EVERY == 0 {
            intr.check()?;
        }
        if q.limit > 0 && kept.len() as u64 >= q.limit {
            break;
        }
        if !b.contains(&d)? {
            continue;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        kept.push(match &q.projection {
            Some(p) => p.apply_with_query(&d, Some(&q.filter))?,
            None => d,
        });
    }
    out.docs = kept;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use bson::doc;

    use super::*;

    fn parse(cmd: &Document) -> Result<Option<Bounds>, CommandError> {
        let e = Engine::in_memory();
        e.create_indexes("db", "c", &[doc! {"key": {"a": 1}}], &docplane_query::NeverInterrupt).unwrap();
        super::parse(cmd, &e, "db", "c")
    }

    #[test]
    fn a_hint_by_name_bounds_its_key_pattern() {
        let b = parse(&doc! {"find": "c", "hint": "a_1", "min": {"a": 2}}).unwrap().unwrap();
        assert!(b.contains(&doc! {"a": 2}).unwrap());
        assert!(!b.contains(&doc! {"a": 1}).unwrap());
        assert_eq!(parse(&doc! {"find": "c", "hint": "nope", "min": {"a": 2}}).unwrap_err().code, 2);
        assert_eq!(parse(&doc! {"find": "c", "hint": "_id_", "min": {"a": 2}}).unwrap_err().code, 51174);
    }

    #[test]
    fn bounds_as_mongod() {
        let b = parse(&doc! {"find": "c", "hint": {"_id": 1}, "min": {"_id": 2}, "max": {"_id": 4}})
            .unwrap()
            .unwrap();
        let ins: Vec<bool> = (1..=5).map(|i| b.contains(&doc! {"_id": i}).unwrap()).collect();
        assert_eq!(ins, vec![false, true, true, false, false]);
        let d =
            parse(&doc! {"find": "c", "hint": {"a": -1, "b": 1}, "min": {"a": 5, "b": 0}}).unwrap().unwrap();
        assert!(d.contains(&doc! {"a": 5, "b": 0}).unwrap());
        assert!(d.contains(&doc! {"a": 4}).unwrap());
        assert!(!d.contains(&doc! {"a": 6, "b": 9}).unwrap());
        assert!(parse(&doc! {"find": "c", "min": {}}).unwrap().is_none());
        assert_eq!(parse(&doc! {"find": "c", "min": {"a": 1}}).unwrap_err().code, 51173);
        assert_eq!(parse(&doc! {"find": "c", "hint": {"a": 1}, "max": {"b": 1}}).unwrap_err().code, 51174);
        assert_eq!(b.contains(&doc! {"_id": [1, 2]}).unwrap_err().code, 115);
    }
}
