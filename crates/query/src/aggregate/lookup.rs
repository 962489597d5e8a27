//! `$lookup` and `$unionWith`: stages that read another collection.

use std::collections::HashMap;

use bson::{Bson, Document};

use super::fields::set_doc_path;
use super::{Lookup, Pipeline, PipelineEnv, Ticker};
use crate::compare::canonical_key;
use crate::error::Result;
use crate::expr::{EvalCtx, MISSING, is_missing};
use crate::path::collect_doc;

/// `$lookup`, equality and pipeline forms.
pub(super) fn lookup(
    spec: &Lookup,
    docs: Vec<Document>,
    env: &dyn PipelineEnv,
    t: &mut Ticker<'_>,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    let Lookup { from, local, foreign, as_field, lets, pipeline } = spec;
    let foreign_docs = env.lookup_collection(from)?;
    env.check()?;
    // Hash the foreign side by the keys of its foreignField values.
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    if let Some(ff) = foreign {
        for (i, fd) in foreign_docs.iter().enumerate() {
            t.tick()?;
            for k in lookup_keys(fd, ff) {
                by_key.entry(k).or_default().push(i);
            }
        }
    }
    let as_parts: Vec<String> = as_field.split('.').map(str::to_string).collect();
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        t.tick()?;
        let mut matched: Vec<Document> = match local {
            Some(lf) => {
                let mut idx: Vec<usize> = Vec::new();
                for k in lookup_keys(&d, lf) {
                    if let Some(is) = by_key.get(&k) {
                        idx.extend(is);
                    }
                }
                idx.sort_unstable();
                idx.dedup();
                idx.into_iter().map(|i| foreign_docs[i].clone()).collect()
            }
            None => foreign_docs.clone(),
        };
        if let Some(p) = pipeline {
            let mut sub = ctx.clone();
            for (name, e) in lets {
                let v = e.eval(&d, ctx)?;
                sub.bind(name.clone(), if is_missing(&v) { MISSING } else { v });
            }
            matched = p.run_ctx(matched, env, &mut sub)?;
        }
        let mut nd = d;
        let arr = Bson::Array(matched.into_iter().map(Bson::Document).collect());
        if crate::path::set_parts(&mut nd, &as_parts, arr.clone()).is_err() {
            set_doc_path(&mut nd, &as_parts, arr);
        }
        out.push(nd);
    }
    Ok(out)
}

/// `$unionWith`.
pub(super) fn union_with(
    coll: &str,
    pipeline: Option<&Pipeline>,
    docs: Vec<Document>,
    env: &dyn PipelineEnv,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    let mut docs = docs;
    let mut other = env.lookup_collection(coll)?;
    if let Some(p) = pipeline {
        other = p.run_ctx(other, env, ctx)?;
    }
    docs.extend(other);
    Ok(docs)
}

/// Keys under which a value is found by `$lookup` equality: the value, and for arrays each
/// element too; missing counts as null.
fn lookup_keys(doc: &Document, path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut found = Vec::new();
    collect_doc(doc, &parts, &mut found);
    let mut keys = Vec::new();
    let mut push = |v: &Bson| {
        let mut k = String::new();
        let v = if matches!(v, Bson::Undefined) { &Bson::Null } else { v };
        canonical_key(v, &mut k);
        if !keys.contains(&k) {
            keys.push(k);
        }
    };
    for v in found {
        match v {
            None => push(&Bson::Null),
            Some(Bson::Array(items)) => {
                if items.is_empty() {
                    // An empty array matches nothing by element but still matches itself.
                    push(&Bson::Array(Vec::new()));
                }
                for i in items {
                    push(i);
                }
                push(&Bson::Array(items.clone()));
            }
            Some(x) => push(x),
        }
    }
    keys
}
