//! The stages that transform documents one by one or as a whole: `$match`, `$project`,
//! `$unwind`, `$replaceRoot`, `$facet`, `$sample`, `$documents`.

use bson::{Bson, Document};

use super::fields::{get_doc_path, remove_doc_path, set_doc_path};
use super::{Pipeline, PipelineEnv, Ticker};
use crate::error::{CommandError, Result};
use crate::expr::{EvalCtx, Expr, is_missing};
use crate::filter::Filter;
use crate::projection::Projection;

/// `$match`.
pub(super) fn matching(
    f: &Filter,
    docs: Vec<Document>,
    t: &mut Ticker<'_>,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    let mut out = Vec::new();
    for d in docs {
        t.tick()?;
        if f.matches_ctx(&d, ctx)? {
            out.push(d);
        }
    }
    Ok(out)
}

/// `$project` (and `$unset`).
pub(super) fn project(
    p: &Projection,
    docs: Vec<Document>,
    t: &mut Ticker<'_>,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        t.tick()?;
        out.push(p.apply_owned_ctx(d, ctx)?);
    }
    Ok(out)
}

/// `$unwind`.
pub(super) fn unwind(
    path: &[String],
    index: Option<&str>,
    preserve: bool,
    docs: Vec<Document>,
    t: &mut Ticker<'_>,
) -> Result<Vec<Document>> {
    let mut out = Vec::new();
    let index_parts: Option<Vec<String>> = index.as_ref().map(|s| s.split('.').map(str::to_string).collect());
    for d in docs {
        t.tick()?;
        match get_doc_path(&d, path).cloned() {
            Some(Bson::Array(items)) if !items.is_empty() => {
                for (i, it) in items.into_iter().enumerate() {
                    let mut nd = d.clone();
                    set_doc_path(&mut nd, path, it);
                    if let Some(ip) = &index_parts {
                        set_doc_path(&mut nd, ip, Bson::Int64(i as i64));
                    }
                    out.push(nd);
                }
            }
            Some(Bson::Array(_)) => {
                if preserve {
                    let mut nd = d;
                    remove_doc_path(&mut nd, path);
                    if let Some(ip) = &index_parts {
                        set_doc_path(&mut nd, ip, Bson::Null);
                    }
                    out.push(nd);
                }
            }
            None | Some(Bson::Null) | Some(Bson::Undefined) => {
                if preserve {
                    let mut nd = d;
                    if let Some(ip) = &index_parts {
                        set_doc_path(&mut nd, ip, Bson::Null);
                    }
                    out.push(nd);
                }
            }
            Some(_) => {
                let mut nd = d;
                if let Some(ip) = &index_parts {
                    set_doc_path(&mut nd, ip, Bson::Null);
                }
                out.push(nd);
            }
        }
    }
    Ok(out)
}

/// `$replaceRoot` / `$replaceWith`.
pub(super) fn replace_root(
    e: &Expr,
    docs: Vec<Document>,
    t: &mut Ticker<'_>,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        t.tick()?;
        match e.eval(&d, ctx)? {
            Bson::Document(nd) => out.push(nd),
            other => {
                return Err(CommandError::location(
                    40228,
                    format!(
                        "'newRoot' expression must evaluate to an object, but resulting value was: {}. Type of resulting value: '{}'. Input document: {d}",
                        if is_missing(&other) { "MISSING".to_string() } else { other.to_string() },
                        crate::expr::type_name(&other)
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// `$facet`.
pub(super) fn facet(
    facets: &[(String, Pipeline)],
    docs: Vec<Document>,
    env: &dyn PipelineEnv,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    // Every facet sees the same input: all but the last borrow it (copying only what
    // their selecting stages let through), the last one takes it.
    let mut result = Document::new();
    let mut input = Some(docs);
    for (i, (name, p)) in facets.iter().enumerate() {
        let r = if i + 1 == facets.len() {
            p.run_ctx(input.take().unwrap_or_default(), env, ctx)?
        } else {
            p.run_borrowed(input.as_deref().unwrap_or_default(), env, ctx)?
        };
        result.insert(name.clone(), Bson::Array(r.into_iter().map(Bson::Document).collect()));
    }
    Ok(vec![result])
}

/// `$sample`.
pub(super) fn sample(n: u64, docs: Vec<Document>) -> Result<Vec<Document>> {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let idx = sample_indices(docs.len(), n);
    let mut docs: Vec<Option<Document>> = docs.into_iter().map(Some).collect();
    Ok(idx.into_iter().filter_map(|i| docs[i].take()).collect())
}

/// `$documents`.
pub(super) fn documents(e: &Expr, ctx: &mut EvalCtx) -> Result<Vec<Document>> {
    let empty = Document::new();
    match e.eval(&empty, ctx)? {
        Bson::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Bson::Document(d) => Ok(d),
                _ => Err(CommandError::location(
                    5858203,
                    "$documents stage must evaluate to an array of objects",
                )),
            })
            .collect(),
        _ => Err(CommandError::location(5858203, "$documents stage must evaluate to an array of objects")),
    }
}

/// Tiny deterministic-per-run PRNG for `$sample` (xorshift64*), seeded from the clock.
fn sample_indices(len: usize, n: usize) -> Vec<usize> {
    let mut state = (bson::DateTime::now().timestamp_millis() as u64) ^ 0x9E37_79B9_7F4A_7C15 ^ (len as u64);
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut idx: Vec<usize> = (0..len).collect();
    let take = n.min(len);
    for i in 0..take {
        let j = i + (next() % (len - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(take);
    idx
}
