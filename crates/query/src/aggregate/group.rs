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

    /// [`AccState::add`] of a value the caller keeps: the states that only read it (`$sum`,
    /// `$avg`, `$min`/`$max` until a value wins, `$first` after its first, `$stdDev*`) copy
    /// nothing.
    fn add_ref(&mut self, acc: Acc, v: &Bson) -> Result<()> {
        match self {
            AccState::Sum(s) => {
                if let Some(n) = num_add(s, v) {
                    *s = n;
                }
            }
            AccState::Avg(sum, n) => {
                if let Some(x) = as_num(v) {
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
                            let o = cmp_bson(v, cur);
                            if acc == Acc::Min { o.is_lt() } else { o.is_gt() }
                        }
                    };
                    if better {
                        *b = Some(v.clone());
                    }
                }
            }
            AccState::First(f) => {
                if f.is_none() {
                    *f = Some(if is_missing(v) { Bson::Null } else { v.clone() });
                }
            }
            AccState::Std(xs) => {
                if let Some(x) = as_num(v) {
                    xs.push(match x {
                        Num::Int(i) => i as f64,
                        Num::Float(f) => f,
                    });
                }
            }
            AccState::Last(_) | AccState::Push(_) | AccState::Set(..) | AccState::Merge(_) => {
                return self.add(acc, v.clone());
            }
        }
        Ok(())
    }

    /// Adds `v` to the state (a copy the state may keep). [`AccState::add_ref`] agrees with
    /// it (tested).
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
            AccState::Std(xs) => {
                if let Some(x) = as_num(&v) {
                    xs.push(match x {
                        Num::Int(i) => i as f64,
                        Num::Float(f) => f,
                    });
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
    // The key of the current document, reused: only a new group's key is allocated.
    let mut key = String::new();
    for d in docs {
        t.tick()?;
        // Keys and accumulated values are read in place: a field or a constant is copied only
        // when a group is created or a state keeps it.
        let key_val = id.eval_ref(d, ctx)?;
        let key_val: &Bson = if is_missing(&key_val) { &Bson::Null } else { &key_val };
        key.clear();
        canonical_key(key_val, &mut key);
        let gi = match index.get(key.as_str()) {
            Some(i) => *i,
            None => {
                bytes += 2 * key.len() + crate::mem::value_size(key_val) + 64 * accs.len();
                groups.push((key_val.clone(), accs.iter().map(|(_, a, _)| AccState::new(*a)).collect()));
                index.insert(key.clone(), groups.len() - 1);
                groups.len() - 1
            }
        };
        for (ai, (_, acc, e)) in accs.iter().enumerate() {
            let v = e.eval_ref(d, ctx)?;
            let st = &mut groups[gi].1[ai];
            let held = st.held();
            st.add_ref(*acc, &v)?;
            if st.held() > held {
                bytes += 16 + crate::mem::value_size(&v);
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

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::interrupt::NeverInterrupt;
    use proptest::prelude::*;

    struct Env;
    impl crate::interrupt::Interrupt for Env {
        fn check(&self) -> Result<()> {
            NeverInterrupt.check()
        }
    }
    impl PipelineEnv for Env {
        fn lookup_collection(&self, _coll: &str) -> Result<Vec<Document>> {
            Ok(Vec::new())
        }
    }

    /// `group` as it was before keys and values were read in place: every value evaluated into
    /// a copy and given to [`AccState::add`].
    fn group_by_copies(id: &Expr, accs: &[(String, Acc, Expr)], docs: &[Document]) -> Vec<Document> {
        let mut ctx = EvalCtx::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut groups: Vec<(Bson, Vec<AccState>)> = Vec::new();
        for d in docs {
            let mut key_val = id.eval(d, &mut ctx).unwrap();
            if is_missing(&key_val) {
                key_val = Bson::Null;
            }
            let mut key = String::new();
            canonical_key(&key_val, &mut key);
            let gi = *index.entry(key).or_insert_with(|| {
                groups.push((key_val, accs.iter().map(|(_, a, _)| AccState::new(*a)).collect()));
                groups.len() - 1
            });
            for (ai, (_, acc, e)) in accs.iter().enumerate() {
                let v = e.eval(d, &mut ctx).unwrap();
                groups[gi].1[ai].add(*acc, v).unwrap();
            }
        }
        groups
            .into_iter()
            .map(|(k, states)| {
                let mut out = bson::doc! {"_id": k};
                for ((name, acc, _), st) in accs.iter().zip(states) {
                    out.insert(name.clone(), st.finish(*acc));
                }
                out
            })
            .collect()
    }

    fn arb_scalar() -> impl Strategy<Value = Bson> {
        prop_oneof![
            Just(Bson::Null),
            (-3i32..3).prop_map(Bson::Int32),
            (-3i64..3).prop_map(Bson::Int64),
            (-3i64..3).prop_map(|i| Bson::Double(i as f64 / 2.0)),
            Just(Bson::Double(f64::NAN)),
            "[ab]{0,1}".prop_map(Bson::String),
            any::<bool>().prop_map(Bson::Boolean),
        ]
    }

    /// A field's value: a scalar, an array of scalars or of `{y: scalar}`, or `{y: scalar}`.
    fn arb_value() -> impl Strategy<Value = Bson> {
        prop_oneof![
            4 => arb_scalar(),
            1 => prop::collection::vec(arb_scalar(), 0..3).prop_map(Bson::Array),
            1 => prop::collection::vec(arb_scalar().prop_map(|y| Bson::Document(bson::doc! {"y": y})), 0..3)
                .prop_map(Bson::Array),
            2 => arb_scalar().prop_map(|y| Bson::Document(bson::doc! {"y": y})),
        ]
    }

    /// A document with `a` and `x` each present or missing.
    fn arb_doc() -> impl Strategy<Value = Document> {
        (prop::option::of(arb_value()), prop::option::of(arb_value())).prop_map(|(a, x)| {
            let mut d = Document::new();
            if let Some(a) = a {
                d.insert("a", a);
            }
            if let Some(x) = x {
                d.insert("x", x);
            }
            d
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Reading keys and values in place gives the groups copying them gave: mixed types,
        /// arrays, missing fields, dotted paths, every accumulator.
        #[test]
        fn in_place_group_agrees_with_copies(
            docs in prop::collection::vec(arb_doc(), 0..12),
            id in prop::sample::select(vec!["$a", "$a.y", "$x", "lit"]),
            path in prop::sample::select(vec!["$x", "$x.y", "$a", "$nope"]),
        ) {
            let id = Expr::parse(&Bson::String(id.to_string())).unwrap();
            let names = ["$sum", "$avg", "$min", "$max", "$first", "$last", "$push", "$addToSet", "$stdDevPop", "$stdDevSamp"];
            let mut accs = Vec::new();
            for (i, n) in names.iter().enumerate() {
                let (acc, e) = super::super::parse::parse_acc(&format!("f{i}"), &Bson::Document(bson::doc! {*n: path})).unwrap();
                accs.push((format!("f{i}"), acc, e));
            }
            accs.push(("one".to_string(), Acc::Sum, Expr::Literal(Bson::Int32(1))));
            let mut t = Ticker { env: &Env, n: 0 };
            let got = group(&id, &accs, docs.iter(), &mut t, &mut EvalCtx::new()).unwrap();
            let want = group_by_copies(&id, &accs, &docs);
            // NaN != NaN: compare the documents' canonical keys.
            let key = |ds: &[Document]| ds.iter().map(|d| { let mut k = String::new(); canonical_key(&Bson::Document(d.clone()), &mut k); k }).collect::<Vec<_>>();
            prop_assert_eq!(key(&got), key(&want));
        }
    }
}
