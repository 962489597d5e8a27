//! Comparison and control flow evaluated from values (`$eq` ... `$cmp`, `$not`) or branches
//! (`$cond`, `$switch`, `$let`). The short-circuiting positional forms are in `eval_op`.

use std::cmp::Ordering;

use bson::Bson;

use super::{EvalCtx, Expr, NamedFn, OpFn, arg, eval_arg, named, truthy};
use crate::compare::cmp_bson;
use crate::error::{CommandError, Result};
use crate::path::Fields;

/// The positional operators of this module.
pub(super) const OPS: &[(&str, OpFn)] = &[
    ("$eq", compare),
    ("$ne", compare),
    ("$gt", compare),
    ("$gte", compare),
    ("$lt", compare),
    ("$lte", compare),
    ("$cmp", cmp),
    ("$not", not),
];

/// The operators with named arguments of this module.
pub(super) const NAMED_OPS: &[(&str, NamedFn)] = &[("$cond", cond), ("$switch", switch), ("$let", let_in)];

fn compare(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    let o = cmp_bson(a0, a1);
    Ok(Bson::Boolean(match name {
        "$eq" => o == Ordering::Equal,
        "$ne" => o != Ordering::Equal,
        "$gt" => o == Ordering::Greater,
        "$gte" => o != Ordering::Less,
        "$lt" => o == Ordering::Less,
        _ => o != Ordering::Greater,
    }))
}

fn cmp(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    Ok(Bson::Int32(match cmp_bson(a0, a1) {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }))
}

fn not(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    Ok(Bson::Boolean(!truthy(a0)))
}

fn cond(_name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let c = match named(args, "if") {
        Some(e) => truthy(&*e.eval_ref(doc, ctx)?),
        None => false,
    };
    if c { ev("then", ctx) } else { ev("else", ctx) }
}

fn switch(_name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let get = |key: &str| named(args, key);
    if let Some(Expr::Array(branches)) = get("branches") {
        for b in branches {
            if let Expr::Array(ct) = b
                && ct.len() == 2
                && truthy(&*ct[0].eval_ref(doc, ctx)?)
            {
                return ct[1].eval(doc, ctx);
            }
        }
    }
    match get("default") {
        Some(d) => d.eval(doc, ctx),
        None => Err(CommandError::location(
            40066,
            "$switch could not find a matching branch for an input, and no default was specified.",
        )),
    }
}

fn let_in(_name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let get = |key: &str| named(args, key);
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let mut bound = Vec::new();
    if let Some(Expr::Object(vars)) = get("vars") {
        for (k, e) in vars {
            bound.push((k.clone(), e.eval(doc, ctx)?));
        }
    }
    let mark = ctx.mark();
    for (k, val) in bound {
        ctx.bind(k, val);
    }
    let r = ev("in", ctx);
    ctx.reset(mark);
    r
}
