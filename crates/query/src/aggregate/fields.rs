//! `$addFields` / `$set` and the document paths aggregation stages write.

use bson::{Bson, Document};

use super::{AddSpec, Ticker};
use crate::error::Result;
use crate::expr::{EvalCtx, is_missing};
use crate::path::Fields;

/// `$addFields` of top-level fields only.
pub(super) fn add_top_level(
    spec: &[(String, AddSpec)],
    docs: Vec<Document>,
    t: &mut Ticker<'_>,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    // Top-level fields only: every expression reads the input document as it was, so
    // evaluate them all, then write into that same document (no copy of it). Nested
    // specifications evaluate per array element, only when reached: they keep the copy.
    let mut out = Vec::with_capacity(docs.len());
    let mut values = Vec::with_capacity(spec.len());
    for mut d in docs {
        t.tick()?;
        values.clear();
        for (_, s) in spec {
            if let AddSpec::Value(e) = s {
                values.push(e.eval(&d, ctx)?);
            }
        }
        for ((k, _), v) in spec.iter().zip(values.drain(..)) {
            if is_missing(&v) {
                d.remove(k);
            } else {
                d.insert(k.clone(), v);
            }
        }
        out.push(d);
    }
    Ok(out)
}

/// `$addFields` with nested specifications.
pub(super) fn add_nested(
    spec: &[(String, AddSpec)],
    docs: Vec<Document>,
    t: &mut Ticker<'_>,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        t.tick()?;
        let mut new = d.clone();
        apply_add(&mut new, spec, &d, ctx)?;
        out.push(new);
    }
    Ok(out)
}

pub(super) fn apply_add(
    target: &mut Document,
    spec: &[(String, AddSpec)],
    root: &dyn Fields,
    ctx: &mut EvalCtx,
) -> Result<()> {
    for (k, s) in spec {
        match s {
            AddSpec::Value(e) => {
                let v = e.eval(root, ctx)?;
                if is_missing(&v) {
                    target.remove(k);
                } else {
                    target.insert(k.clone(), v);
                }
            }
            AddSpec::Nested(sub) => match target.get_mut(k) {
                Some(Bson::Document(d)) => apply_add(d, sub, root, ctx)?,
                Some(Bson::Array(items)) => {
                    for it in items.iter_mut() {
                        match it {
                            Bson::Document(d) => apply_add(d, sub, root, ctx)?,
                            other => {
                                let mut d = Document::new();
                                apply_add(&mut d, sub, root, ctx)?;
                                *other = Bson::Document(d);
                            }
                        }
                    }
                }
                _ => {
                    let mut d = Document::new();
                    apply_add(&mut d, sub, root, ctx)?;
                    target.insert(k.clone(), d);
                }
            },
        }
    }
    Ok(())
}

/// Field lookup through documents only (aggregation paths do not index arrays).
pub(super) fn get_doc_path<'a>(doc: &'a Document, parts: &[String]) -> Option<&'a Bson> {
    let (first, rest) = parts.split_first()?;
    let mut cur = doc.get(first)?;
    for p in rest {
        match cur {
            Bson::Document(d) => cur = d.get(p)?,
            _ => return None,
        }
    }
    Some(cur)
}

pub(super) fn set_doc_path(doc: &mut Document, parts: &[String], v: Bson) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    if rest.is_empty() {
        doc.insert(first.clone(), v);
        return;
    }
    if !matches!(doc.get(first), Some(Bson::Document(_))) {
        doc.insert(first.clone(), Document::new());
    }
    if let Some(Bson::Document(d)) = doc.get_mut(first) {
        set_doc_path(d, rest, v);
    }
}

pub(super) fn remove_doc_path(doc: &mut Document, parts: &[String]) {
    let Some((last, parent)) = parts.split_last() else {
        return;
    };
    if parent.is_empty() {
        doc.remove(last);
        return;
    }
    let mut cur = doc;
    for p in parent {
        match cur.get_mut(p) {
            Some(Bson::Document(d)) => cur = d,
            _ => return,
        }
    }
    cur.remove(last);
}
