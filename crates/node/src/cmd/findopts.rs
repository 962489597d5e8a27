//! find's `returnKey` and `showRecordId` (mongod's `ReturnKeyStage` and `$recordId`).
//!
//! `returnKey: true` returns, for each document, the keys of the index the plan reads instead of
//! the document: the values of the plan's key pattern (`{_id: 1}` for an `_id` lookup or range),
//! `{}` for a collection scan, as mongod does; the projection is not applied. A document whose key
//! field holds an array (a multikey entry: mongod returns the entry that matched) is refused
//! rather than answered on a guess. `showRecordId: true` adds `$recordId`, the document's record
//! id ([`docplane_engine::Engine::record_ids`]: the node's insertion sequence, not kept across a
//! restart); with `returnKey` it adds nothing, as in mongod, whose return-key stage replaces the
//! whole result (the command monitoring spec's "find with showRecordId and returnKey" expects
//! `{_id: 1}` alone). Either makes the find read its result whole (no streaming), like `min`/`max`.

use bson::{Bson, Document};
use docplane_engine::{Engine, FindQuery};
use docplane_query::{CommandError, Interrupt, get_path_exact};

use super::{Ctx, minmax, util};

/// What of the two a find asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyOpts {
    return_key: bool,
    show_record_id: bool,
}

/// The command's `returnKey` / `showRecordId`; `None` when neither is set.
pub fn parse(cmd: &Document) -> Result<Option<KeyOpts>, CommandError> {
    let return_key = util::opt_bool(cmd, "returnKey")?.unwrap_or(false);
    let show_record_id = util::opt_bool(cmd, "showRecordId")?.unwrap_or(false);
    Ok((return_key || show_record_id).then_some(KeyOpts { return_key, show_record_id }))
}

/// Runs the find `q` (bounded by `min`/`max` when given) with the options; returns every
/// document of the result, for the caller's cursor.
pub async fn find(
    ctx: &Ctx<'_>,
    coll: String,
    q: FindQuery,
    bounds: Option<minmax::Bounds>,
    opts: KeyOpts,
) -> Result<Vec<Document>, CommandError> {
    let (db, op) = (ctx.db.clone(), ctx.op.clone());
    let out = ctx
        .blocking(move |e, intr| {
            op.set_plan_summary(e.plan_summary(&db, &coll, &q.filter, q.sort.as_ref(), q.hint.as_ref()));
            let wide = FindQuery { projection: None, ..q.clone() };
            let out = match &bounds {
                Some(b) => minmax::find(e, &db, &coll, &wide, b, intr)?,
                None => e.find(&db, &coll, &wide, intr)?,
            };
            op.set_plan_summary(out.plan_summary.clone());
            apply(e, &db, &coll, &q, opts, out.docs, intr)
        })
        .await?;
    Ok(out)
}

/// Turns the documents `q` found into what the options return.
fn apply(
    e: &Engine,
    db: &str,
    coll: &str,
    q: &FindQuery,
    opts: KeyOpts,
    docs: Vec<Document>,
    intr: &dyn Interrupt,
) -> Result<Vec<Document>, CommandError> {
    let pattern = if opts.return_key {
        e.plan_key_pattern(db, coll, &q.filter, q.sort.as_ref(), q.hint.as_ref())?
    } else {
        None
    };
    let ids = if opts.show_record_id && !opts.return_key {
        let ids: Vec<Bson> = docs.iter().map(|d| d.get("_id").cloned().unwrap_or(Bson::Null)).collect();
        e.record_ids(db, coll, &ids)
    } else {
        Vec::new()
    };
    let mut out = Vec::with_capacity(docs.len());
    for (i, d) in docs.into_iter().enumerate() {
        if i % docplane_query::interrupt::CHECK_EVERY == 0 {
            intr.check()?;
        }
        let mut shown = if opts.return_key {
            index_key(&d, pattern.as_ref())?
        } else {
            match &q.projection {
                Some(p) => p.apply_with_query(&d, Some(&q.filter))?,
                None => d,
            }
        };
        if let Some(Some(id)) = ids.get(i) {
            shown.insert("$recordId", *id);
        }
        out.push(shown);
    }
    Ok(out)
}

/// The index key of `doc` for `pattern` (`{}` without an index).
fn index_key(doc: &Document, pattern: Option<&Document>) -> Result<Document, CommandError> {
    let mut key = Document::new();
    for path in pattern.into_iter().flat_map(Document::keys) {
        match get_path_exact(doc, path) {
            Some(Bson::Array(_)) => {
                return Err(CommandError::command_not_supported(format!(
                    "returnKey over the array at '{path}' (a multikey index) is not supported by docplane's node"
                )));
            }
            Some(v) => {
                key.insert(path.clone(), v.clone());
            }
            None => {
                key.insert(path.clone(), Bson::Null);
            }
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use bson::doc;

    use super::*;

    #[test]
    fn keys_follow_the_pattern() {
        let d = doc! {"_id": 1, "a": {"b": 2}, "c": 3};
        assert_eq!(index_key(&d, Some(&doc! {"a.b": 1, "z": -1})).unwrap(), doc! {"a.b": 2, "z": null});
        assert_eq!(index_key(&d, None).unwrap(), doc! {});
        assert_eq!(index_key(&doc! {"a": [1]}, Some(&doc! {"a": 1})).unwrap_err().code, 115);
        assert_eq!(parse(&doc! {"find": "c", "returnKey": false}).unwrap(), None);
        assert_eq!(parse(&doc! {"find": "c", "showRecordId": "yes"}).unwrap_err().code, 14);
    }
}
