//! Object operators: `$arrayToObject`, `$objectToArray`, `$mergeObjects`, `$getField`,
//! `$setField`/`$unsetField`.

use bson::{Bson, Document};

use super::{
    EvalCtx, Expr, MISSING, NamedFn, OpFn, arg, eval_arg, is_missing, is_nullish, named, spread, type_err,
    type_name,
};
use crate::error::{CommandError, Result};
use crate::path::Fields;

/// The positional operators of this module.
pub(super) const OPS: &[(&str, OpFn)] = &[
    ("$arrayToObject", array_to_object),
    ("$objectToArray", object_to_array),
    ("$mergeObjects", merge_objects),
];

/// The operators with named arguments of this module.
pub(super) const NAMED_OPS: &[(&str, NamedFn)] =
    &[("$setField", eval_set_field), ("$unsetField", eval_set_field), ("$getField", get_field)];

/// `$setField` / `$unsetField` take a constant string `field` (mongod's parse-time checks).
pub(super) fn check_set_field_name(op: &str, args: &[(String, Expr)]) -> Result<()> {
    match args.iter().find(|(k, _)| k == "field").map(|(_, e)| e) {
        Some(Expr::Literal(Bson::String(_))) => Ok(()),
        Some(Expr::Literal(other)) => Err(CommandError::location(
            4161107,
            format!("{op} requires 'field' to evaluate to type String, but got {}", type_name(other)),
        )),
        _ => Err(CommandError::location(
            4161106,
            format!("{op} requires 'field' to evaluate to a constant, but got a non-constant argument"),
        )),
    }
}

/// `$setField` / `$unsetField`: `input` with `field` set to `value` (removed when `value` is
/// missing, as `$$REMOVE`), a field of that exact name (dots and `$` included) kept in place.
fn eval_set_field(op: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let field = match named(args, "field") {
        Some(Expr::Literal(Bson::String(s))) => s.clone(),
        _ => return Err(CommandError::location(4161106, format!("{op} requires 'field' to be a constant"))),
    };
    let input = match named(args, "input") {
        Some(e) => e.eval(doc, ctx)?,
        None => MISSING,
    };
    let mut out = match input {
        Bson::Null | Bson::Undefined => return Ok(Bson::Null),
        Bson::Document(d) => d,
        other => {
            return Err(type_err(4161105, op, "requires 'input' to evaluate to type Object", &other));
        }
    };
    let value = match named(args, "value") {
        Some(e) if op == "$setField" => e.eval(doc, ctx)?,
        _ => MISSING,
    };
    if is_missing(&value) {
        out.remove(&field);
    } else {
        out.insert(field, value);
    }
    Ok(Bson::Document(out))
}

fn spread_docs(v: Vec<Bson>) -> Vec<Bson> {
    spread(v)
}

fn array_to_object(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    if is_nullish(a0) {
        return Ok(Bson::Null);
    }
    let Bson::Array(arr) = &a0 else {
        return Err(type_err(40386, "$arrayToObject", "requires an array input", a0));
    };
    let mut out = Document::new();
    for e in arr {
        let (k, val) = match e {
            Bson::Array(pair) if pair.len() == 2 => (pair[0].clone(), pair[1].clone()),
            Bson::Document(d) if d.len() == 2 && d.contains_key("k") && d.contains_key("v") => {
                (d.get("k").cloned().unwrap_or(Bson::Null), d.get("v").cloned().unwrap_or(Bson::Null))
            }
            _ => {
                return Err(CommandError::location(
                    40398,
                    "$arrayToObject requires an array of key-value pairs",
                ));
            }
        };
        let Bson::String(k) = k else {
            return Err(CommandError::location(40394, "$arrayToObject requires keys to be strings"));
        };
        out.insert(k, val);
    }
    Ok(Bson::Document(out))
}

fn object_to_array(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    match &a0 {
        Bson::Null | Bson::Undefined => Ok(Bson::Null),
        Bson::Document(d) => Ok(Bson::Array(
            d.iter().map(|(k, val)| Bson::Document(bson::doc! {"k": k.clone(), "v": val.clone()})).collect(),
        )),
        other => Err(type_err(40390, "$objectToArray", "requires a document input", other)),
    }
}

fn merge_objects(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let mut out = Document::new();
    for x in spread_docs(v) {
        match x {
            Bson::Document(d) => {
                for (k, val) in d {
                    out.insert(k, val);
                }
            }
            Bson::Null | Bson::Undefined => {}
            other => return Err(type_err(40400, "$mergeObjects", "requires object inputs", &other)),
        }
    }
    Ok(Bson::Document(out))
}

fn get_field(_name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let get = |key: &str| named(args, key);
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let field = match ev("field", ctx)? {
        Bson::String(s) => s,
        other => {
            return Err(type_err(
                5654602,
                "$getField",
                "requires 'field' to evaluate to type String",
                &other,
            ));
        }
    };
    let input = match get("input") {
        Some(e) => e.eval(doc, ctx)?,
        None => Bson::Document(doc.to_document()),
    };
    match input {
        Bson::Document(d) => Ok(d.get(&field).cloned().unwrap_or(MISSING)),
        Bson::Null | Bson::Undefined => Ok(Bson::Null),
        _ => Ok(MISSING),
    }
}
