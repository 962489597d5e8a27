//! `$group`, `$bucket` and `$sortByCount`: the stages that accumulate.

use std::collections::HashMap;

use bson::{Bson, Document};

use super::{Acc, PipelineEnv, Stage, Ticker, run_stage};
use crate::compare::{Num, as_num, canonical_key, cmp_bson};
use crate::error::{CommandError, Result};
use crate::expr::{EvalCtx, Expr, is_missing, num_add};

/// State of one accumulator in one group.
#[derive(Debug, Clone)]
enum AccState {
    Sum(Bson),
    Avg(f64, u64),
    Best(Option<Bson>),
    First(Option<Bson>),
    Last(Bson),
    Push(Vec<Bson>),
    Set(Vec<Bson>, std::collections::HashSet<String>),
    Merge(Document),
    Std(Vec<f64>),
}

impl AccState {
    fn new(acc: Acc) -> Self {
        match acc {
            Acc::Sum => AccState::Sum(Bson::Int32(0)),
            Acc::Avg => AccState::Avg(0.0, 0),
            Acc::Min | Acc::Max => AccState::Best(None),
            Acc::First => AccState::First(None),
            Acc::Last => AccState::Last(Bson::Null),
            Acc::Push => AccState::Push(Vec::new()),
            Acc::AddToSet => AccState::Set(Vec::new(), Default::default()),
            Acc::MergeObjects => AccState::Merge(Document::new()),
            Acc::StdDevPop | Acc::StdDevSamp => AccState::Std(Vec::new()),
        }
    }

    /// How many values the state collects (`$push`, `$addToSet`, `$stdDev*`).
    fn held(&self) -> usize {
        match self {
            AccState::Push(items) | AccState::Set(items, _) => items.len(),
            AccState::Std(xs) => xs.len(),
            _ => 0,
        }
    }

    fn add(&mut self, acc: Acc, v: Bson) -> Result<()> {
        match self {
            AccState::Sum(s) => {
                if let Some(n) = num_add(s, &v) {
                    *s = n;
                }
            }
            AccState::Avg(sum, n) => {
                if let Some(x) = as_num(&v) {
                    *sum += match x {
                        Num::Int(i) => i as f64,
                        Num::Float(f) => f,
                    };
                    *n += 1;
                }
            }
            AccState::Best(b) => {
                if !matches!(v, Bson::Null | Bson::Undefined) {
                    let better = match b {
                        None => true,
                        Some(cur) => {
                            let o = cmp_bson(&v, cur);
                            if acc == Acc::Min { o.is_lt() } else { o.is_gt() }
                        }
                    };
                    if better {
                        *b = Some(v);
                    }
                }
            }
            AccState::First(f) => {
                if f.is_none() {
                    *f = Some(if is_missing(&v) { Bson::Null } else { v });
                }
            }
            AccState::Last(l) => *l = if is_missing(&v) { Bson::Null } else { v },
            AccState::Push(items) => {
                if !is_missing(&v) {
                    items.push(v);
                }
            }
            AccState::Set(items, seen) => {
                if !is_missing(&v) {
                    let mut k = String::new();
                    canonical_key(&v, &mut k);
                    if seen.insert(k) {
                        items.push(v);
                    }
                }
            }
            AccState::Merge(d) => match v {
                Bson::Document(sub) => {
                    for (k, x) in sub {
                        d.insert(k, x);
                    }
                }
                Bson::Null | Bson::Undefined => {}
                other => {
                    return Err(CommandError::location(
                        40400,
                        format!(
                            "$mergeObjects requires object inputs, but input {other} is of type {}",
                            crate::expr::type_name(&other)
                        ),
                    ));
                }
            },
            AccState::Std(xs) => {
                if let Some(x) = as_num(&v) {
                    xs.push(match x {
                        Num::Int(i) => i as f64,
                        Num::Float(f) => f,
                    });
                }
            }
        }
        Ok(())
    }

    fn finish(self, acc: Acc) -> Bson {
        match self {
            AccState::Sum(s) => s,
            AccState::Avg(_, 0) => Bson::Null,
            AccState::Avg(sum, n) => Bson::Double(sum / n as f64),
            AccState::Best(b) => b.unwrap_or(Bson::Null),
            AccState::First(f) => f.unwrap_or(Bson::Null),
            AccState::Last(l) => l,
            AccState::Push(items) | AccState::Set(items, _) => Bson::Array(items),
            AccState::Merge(d) => Bson::Document(d),
            AccState::Std(xs) => {
                let n = xs.len();
                let denom = if acc == Acc::StdDevSamp { n.saturating_sub(1) } else { n };
                if denom == 0 {
                    return Bson::Null;
                }
                let mean = xs.iter().sum::<f64>() / n as f64;
                let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / denom as f64;
                Bson::Double(var.sqrt())
            }
        }
    }
}

/// `$group` over documents it only reads (owned or borrowed input alike): one pass, the groups
/// in order of first appearance, bounded by mongod's `$group` memory limit.
pub(super) fn group<'a>(
    id: &Expr,
    accs: &[(String, Acc, Expr)],
    docs: impl Iterator<Item = &'a Document>,
    t: &mut Ticker<'_>,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<(Bson, Vec<AccState>)> = Vec::new();
    // What the groups hold, as mongod counts it against its $group limit: keys and the
    // values of accumulators that collect them.
    let mut bytes = 0usize;
    for d in docs {
        t.tick()?;
        let mut key_val = id.eval(d, ctx)?;
        if is_missing(&key_val) {
            key_val = Bson::Null;
        }
        let mut key = String::new();
        canonical_key(&key_val, &mut key);
        let gi = match index.get(&key) {
            Some(i) => *i,
            None => {
                bytes += 2 * key.len() + crate::mem::value_size(&key_val) + 64 * accs.len();
                groups.push((key_val, accs.iter().map(|(_, a, _)| AccState::new(*a)).collect()));
                index.insert(key, groups.len() - 1);
                groups.len() - 1
            }
        };
        for (ai, (_, acc, e)) in accs.iter().enumerate() {
            let v = e.eval(d, ctx)?;
            let st = &mut groups[gi].1[ai];
            let (held, size) = (st.held(), crate::mem::value_size(&v));
            st.add(*acc, v)?;
            if st.held() > held {
                bytes += 16 + size;
            }
        }
        if bytes > crate::mem::MAX_BLOCKING_BYTES {
            return Err(crate::mem::group_exceeded());
        }
    }
    Ok(groups
        .into_iter()
        .map(|(k, states)| {
            let mut out = Document::new();
            out.insert("_id", k);
            for ((name, acc, _), st) in accs.iter().zip(states) {
                out.insert(name.clone(), st.finish(*acc));
            }
            out
        })
        .collect())
}

/// `$bucket`.
pub(super) fn bucket(
    group_by: &Expr,
    boundaries: &[Bson],
    default: Option<&Bson>,
    accs: &[(String, Acc, Expr)],
    docs: Vec<Document>,
    t: &mut Ticker<'_>,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    // Bucket index per document: position in `boundaries`, or `boundaries.len()` for default.
    let mut states: Vec<Option<Vec<AccState>>> = vec![None; boundaries.len()];
    let bucket_type = crate::compare::canonical_type_order(&boundaries[0]);
    for d in &docs {
        t.tick()?;
        let v = group_by.eval(d, ctx)?;
        let v = if is_missing(&v) { Bson::Null } else { v };
        let slot = if crate::compare::canonical_type_order(&v) == bucket_type {
            boundaries.windows(2).position(|w| !cmp_bson(&v, &w[0]).is_lt() && cmp_bson(&v, &w[1]).is_lt())
        } else {
            None
        };
        let slot = match (slot, default) {
            (Some(i), _) => i,
            (None, Some(_)) => boundaries.len() - 1,
            (None, None) => {
                return Err(CommandError::location(
                    40066,
                    "$switch could not find a matching branch for an input, and no default was specified.",
                ));
            }
        };
        let st = states[slot].get_or_insert_with(|| accs.iter().map(|(_, a, _)| AccState::new(*a)).collect());
        for (ai, (_, acc, e)) in accs.iter().enumerate() {
            let v = e.eval(d, ctx)?;
            st[ai].add(*acc, v)?;
        }
    }
    let mut out = Vec::new();
    for (i, st) in states.into_iter().enumerate() {
        let Some(st) = st else { continue };
        let id = if i + 1 == boundaries.len() {
            default.cloned().unwrap_or(Bson::Null)
        } else {
            boundaries[i].clone()
        };
        let mut d = Document::new();
        d.insert("_id", id);
        for ((name, acc, _), s) in accs.iter().zip(st) {
            d.insert(name.clone(), s.finish(*acc));
        }
        out.push(d);
    }
    Ok(out)
}

/// `$sortByCount`.
pub(super) fn sort_by_count(
    e: &Expr,
    docs: Vec<Document>,
    env: &dyn PipelineEnv,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    let group = Stage::Group {
        id: e.clone(),
        accs: vec![("count".to_string(), Acc::Sum, Expr::Literal(Bson::Int32(1)))],
    };
    let mut out = run_stage(&group, docs, env, ctx)?;
    // Descending by count; ties keep first-seen order.
    out.sort_by(|a, b| {
        cmp_bson(b.get("count").unwrap_or(&Bson::Null), a.get("count").unwrap_or(&Bson::Null))
    });
    Ok(out)
}
