//! Array operators: `$size`, `$arrayElemAt`, `$first`/`$last`, `$in`, `$concatArrays`, `$slice`,
//! `$reverseArray`, `$range`, `$indexOfArray`, `$map`/`$filter`, `$reduce`, `$sortArray`, and the
//! memory bound of the arrays they build.

use bson::Bson;

use super::arith::{Width, int_arg, int_as, to_i64_exact};
use super::{
    EvalCtx, Expr, MISSING, NamedFn, OpFn, arg, eval_arg, is_missing, is_nullish, named, named_str, truthy,
    type_err, type_name,
};
use crate::compare::{bson_eq, cmp_bson};
use crate::error::{CommandError, Result};
use crate::path::Fields;

/// The positional operators of this module.
pub(super) const OPS: &[(&str, OpFn)] = &[
    ("$size", size),
    ("$arrayElemAt", elem_at),
    ("$first", first_last),
    ("$last", first_last),
    ("$in", is_in),
    ("$concatArrays", concat_arrays),
    ("$isArray", is_array),
    ("$slice", slice),
    ("$reverseArray", reverse),
    ("$range", range),
    ("$indexOfArray", index_of_array),
];

/// The operators with named arguments of this module.
pub(super) const NAMED_OPS: &[(&str, NamedFn)] =
    &[("$map", map_filter), ("$filter", map_filter), ("$reduce", reduce), ("$sortArray", sort_array)];

/// Array operators poll for interruption every this many elements they copy or build.
pub(super) const ARRAY_POLL_EVERY: usize = 4096;
/// mongod's `internalQueryMaxRangeBytes` (100 MiB).
pub const MAX_RANGE_BYTES: usize = 100 * 1024 * 1024;
/// The memory of one array element. mongod counts `sizeof(Value)` (16 bytes); a `Bson` is 7x
/// that, so the node counts what it really allocates and refuses smaller arrays than mongod
/// (about 0.9 million elements rather than 6.5 million) to hold the same memory bound.
pub(super) const APPROX_VALUE_BYTES: usize = std::mem::size_of::<Bson>();
/// The array itself (mongod: `sizeof(std::vector<Value>)`).
const RANGE_VEC_BYTES: usize = std::mem::size_of::<Vec<Bson>>();

/// Fails with ExceededMemoryLimit (146), mongod's `$range` error, when an array of `len`
/// elements would need more than [`MAX_RANGE_BYTES`] (`$range`, `$concatArrays`).
pub(super) fn check_array_memory(op: &str, len: usize) -> Result<()> {
    let needed = RANGE_VEC_BYTES.saturating_add(len.saturating_mul(APPROX_VALUE_BYTES));
    if needed >= MAX_RANGE_BYTES {
        return Err(CommandError::new(
            146,
            "ExceededMemoryLimit",
            format!(
                "{op} would use too much memory ({needed} bytes) and cannot spill to disk. \
                 Memory limit: {MAX_RANGE_BYTES} bytes"
            ),
        ));
    }
    Ok(())
}

fn size(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    match &a0 {
        Bson::Array(a) => Ok(Bson::Int32(a.len() as i32)),
        other => Err(CommandError::location(
            17124,
            format!("The argument to $size must be an array. Type of the argument: {}", type_name(other)),
        )),
    }
}

fn elem_at(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    if is_nullish(a0) || is_nullish(a1) {
        return Ok(Bson::Null);
    }
    let Bson::Array(arr) = &a0 else {
        return Err(CommandError::location(
            28689,
            format!("$arrayElemAt's first argument must be an array, but is {}", type_name(a0)),
        ));
    };
    let idx = to_i64_exact(a1).ok_or_else(|| {
        CommandError::location(
            28690,
            format!("$arrayElemAt's second argument must be a numeric value, but is {}", type_name(a1)),
        )
    })?;
    let i = if idx < 0 { arr.len() as i64 + idx } else { idx };
    Ok(if i < 0 { MISSING } else { arr.get(i as usize).cloned().unwrap_or(MISSING) })
}

fn first_last(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    match &a0 {
        Bson::Null | Bson::Undefined => Ok(Bson::Null),
        Bson::Array(arr) => {
            Ok(if name == "$first" { arr.first() } else { arr.last() }.cloned().unwrap_or(MISSING))
        }
        other => Err(CommandError::location(
            28689,
            format!("{name}'s argument must be an array, but is {}", type_name(other)),
        )),
    }
}

fn is_in(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    match &a1 {
        Bson::Array(arr) => Ok(Bson::Boolean(arr.iter().any(|x| bson_eq(x, a0)))),
        other => Err(CommandError::location(
            40081,
            format!("$in requires an array as a second argument, found: {}", type_name(other)),
        )),
    }
}

fn concat_arrays(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let total: usize = v.iter().map(|x| if let Bson::Array(a) = x { a.len() } else { 0 }).sum();
    check_array_memory("$concatArrays", total)?;
    let mut out = Vec::with_capacity(total);
    for x in &v {
        match x {
            Bson::Array(a) => {
                for chunk in a.chunks(ARRAY_POLL_EVERY) {
                    crate::interrupt::poll()?;
                    out.extend(chunk.iter().cloned());
                }
            }
            Bson::Null | Bson::Undefined => return Ok(Bson::Null),
            other => return Err(type_err(28664, "$concatArrays", "only supports arrays", other)),
        }
    }
    Ok(Bson::Array(out))
}

fn is_array(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    Ok(Bson::Boolean(matches!(a0, Bson::Array(_))))
}

fn slice(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    if is_nullish(a0) {
        return Ok(Bson::Null);
    }
    let Bson::Array(arr) = &a0 else {
        return Err(CommandError::location(
            28724,
            format!("First argument to $slice must be an array, but is of type: {}", type_name(a0)),
        ));
    };
    let len = arr.len() as i64;
    let (start, n) = if v.len() == 2 {
        let n = int_arg(a1, "$slice")?;
        if n >= 0 { (0, n) } else { ((len + n).max(0), -n) }
    } else {
        let pos = int_arg(a1, "$slice")?;
        let n = int_arg(&v[2], "$slice")?;
        if n <= 0 {
            return Err(CommandError::location(
                28729,
                format!("Third argument to $slice must be positive: {n}"),
            ));
        }
        let start = if pos < 0 { (len + pos).max(0) } else { pos.min(len) };
        (start, n)
    };
    let start = start.min(len) as usize;
    let end = (start as i64).saturating_add(n).min(len) as usize;
    Ok(Bson::Array(arr[start..end].to_vec()))
}

fn reverse(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    match &a0 {
        Bson::Null | Bson::Undefined => Ok(Bson::Null),
        Bson::Array(a) => Ok(Bson::Array(a.iter().rev().cloned().collect())),
        other => Err(type_err(34435, "$reverseArray", "argument must be an array", other)),
    }
}

fn range(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    let start = int_arg(a0, "$range")?;
    let end = int_arg(a1, "$range")?;
    let step = match v.get(2) {
        Some(s) => int_arg(s, "$range")?,
        None => 1,
    };
    if step == 0 {
        return Err(CommandError::location(34449, "$range requires a non-zero step value"));
    }
    // mongod's ExpressionRange: the length is known up front and checked against
    // internalQueryMaxRangeBytes before anything is built.
    let steps = (i128::from(end) - i128::from(start)) / i128::from(step);
    let len = if (step > 0 && start < end) || (step < 0 && start > end) {
        usize::try_from(steps.unsigned_abs() + 1).unwrap_or(usize::MAX)
    } else {
        0
    };
    check_array_memory("$range", len)?;
    let mut out = Vec::with_capacity(len.min(MAX_RANGE_BYTES / APPROX_VALUE_BYTES));
    let mut i = start;
    while (step > 0 && i < end) || (step < 0 && i > end) {
        crate::interrupt::poll_every(out.len(), ARRAY_POLL_EVERY)?;
        out.push(int_as(Width::I32, i));
        i = match i.checked_add(step) {
            Some(n) => n,
            None => break,
        };
    }
    Ok(Bson::Array(out))
}

fn index_of_array(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    if is_nullish(a0) {
        return Ok(Bson::Null);
    }
    let Bson::Array(arr) = &a0 else {
        return Err(type_err(40090, "$indexOfArray", "requires an array as a first argument", a0));
    };
    let start = match v.get(2) {
        Some(x) => int_arg(x, "$indexOfArray")?.max(0) as usize,
        None => 0,
    };
    let end = match v.get(3) {
        Some(x) => (int_arg(x, "$indexOfArray")?.max(0) as usize).min(arr.len()),
        None => arr.len(),
    };
    let found = (start..end).find(|i| bson_eq(&arr[*i], a1));
    Ok(Bson::Int32(found.map(|i| i as i32).unwrap_or(-1)))
}

fn map_filter(name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let get = |key: &str| named(args, key);
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let input = ev("input", ctx)?;
    let arr = match input {
        Bson::Null | Bson::Undefined => return Ok(Bson::Null),
        Bson::Array(a) => a,
        other => {
            return Err(type_err(
                if name == "$map" { 16883 } else { 28651 },
                name,
                "input must be an array",
                &other,
            ));
        }
    };
    let var = named_str(args, "as", "this");
    let body = if name == "$map" { get("in") } else { get("cond") };
    let limit = match get("limit") {
        Some(e) => {
            let l = e.eval(doc, ctx)?;
            if is_nullish(&l) { None } else { Some(int_arg(&l, "$filter")?.max(0) as usize) }
        }
        None => None,
    };
    let mut out = Vec::new();
    let mark = ctx.mark();
    for e in arr {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        ctx.reset(mark);
        ctx.bind(var.clone(), e.clone());
        let r = match body {
            Some(b) => b.eval(doc, ctx),
            None => Ok(Bson::Null),
        };
        let r = match r {
            Ok(r) => r,
            Err(err) => {
                ctx.reset(mark);
                return Err(err);
            }
        };
        if name == "$map" {
            out.push(if is_missing(&r) { Bson::Null } else { r });
        } else if truthy(&r) {
            out.push(e);
        }
    }
    ctx.reset(mark);
    Ok(Bson::Array(out))
}

fn reduce(_name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let input = ev("input", ctx)?;
    let arr = match input {
        Bson::Null | Bson::Undefined => return Ok(Bson::Null),
        Bson::Array(a) => a,
        other => return Err(type_err(40080, "$reduce", "requires 'input' to be an array", &other)),
    };
    let mut acc = ev("initialValue", ctx)?;
    let mark = ctx.mark();
    for e in arr {
        ctx.reset(mark);
        ctx.bind("value", acc.clone());
        ctx.bind("this", e);
        match ev("in", ctx) {
            Ok(r) => acc = r,
            Err(err) => {
                ctx.reset(mark);
                return Err(err);
            }
        }
    }
    ctx.reset(mark);
    Ok(acc)
}

fn sort_array(_name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let get = |key: &str| named(args, key);
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let input = ev("input", ctx)?;
    let mut arr = match input {
        Bson::Null | Bson::Undefined => return Ok(Bson::Null),
        Bson::Array(a) => a,
        other => return Err(type_err(2942504, "$sortArray", "requires an array input", &other)),
    };
    match get("sortBy") {
        Some(Expr::Literal(Bson::Document(spec))) => {
            let s = crate::sort::SortSpec::parse(spec)?;
            arr.sort_by(|a, b| match (a, b) {
                (Bson::Document(x), Bson::Document(y)) => s.compare(x, y),
                _ => cmp_bson(a, b),
            });
        }
        Some(Expr::Literal(dir)) => {
            let desc = to_i64_exact(dir) == Some(-1);
            arr.sort_by(|a, b| if desc { cmp_bson(b, a) } else { cmp_bson(a, b) });
        }
        _ => {
            return Err(CommandError::location(
                2942505,
                "$sortArray requires sortBy to be 1, -1 or a document",
            ));
        }
    }
    Ok(Bson::Array(arr))
}
