//! Type operators: `$type`, `$isNumber`, `$convert` and the `$to*` shorthands.

use bson::{Bson, DateTime};

use super::arith::{f64_to_decimal, num_f64, to_i64_exact};
use super::{EvalCtx, Expr, NamedFn, OpFn, arg, eval_arg, is_nullish, named, truthy, type_name};
use crate::compare::{Num, as_num};
use crate::error::{CommandError, Result};
use crate::filter::type_alias;
use crate::path::Fields;

/// The positional operators of this module.
pub(super) const OPS: &[(&str, OpFn)] = &[
    ("$type", type_of),
    ("$isNumber", is_number),
    ("$toString", to_string),
    ("$toInt", to_int),
    ("$toLong", to_long),
    ("$toDouble", to_double),
    ("$toDecimal", to_decimal),
    ("$toBool", to_bool),
    ("$toDate", to_date),
    ("$toObjectId", to_object_id),
];

/// The operators with named arguments of this module.
pub(super) const NAMED_OPS: &[(&str, NamedFn)] = &[("$convert", convert_named)];

fn iso_date(d: &bson::DateTime) -> String {
    let c = d.to_chrono();
    c.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `$toString` conversion.
pub fn to_string_value(v: &Bson) -> Result<Bson> {
    Ok(Bson::String(match v {
        Bson::Null | Bson::Undefined => return Ok(Bson::Null),
        Bson::String(s) | Bson::Symbol(s) => s.clone(),
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Double(f) => fmt_double(*f),
        Bson::Decimal128(d) => d.to_string(),
        Bson::Boolean(b) => b.to_string(),
        Bson::ObjectId(o) => o.to_hex(),
        Bson::DateTime(d) => iso_date(d),
        other => {
            return Err(CommandError::location(
                241,
                format!("Unsupported conversion from {} to string", type_name(other)),
            ));
        }
    }))
}

fn fmt_double(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity".into() } else { "-Infinity".into() }
    } else {
        format!("{f}")
    }
}

fn conversion_error(from: &Bson, to: &str) -> CommandError {
    CommandError::location(
        241,
        format!("Unsupported conversion from {} to {to} in $convert with no onError value", type_name(from)),
    )
}

/// `$convert` to a target type name.
pub(super) fn convert(v: &Bson, to: &str) -> Result<Bson> {
    if is_nullish(v) {
        return Ok(Bson::Null);
    }
    let fail = || conversion_error(v, to);
    let parse_err = |s: &str| {
        CommandError::location(241, format!("Failed to parse number '{s}' in $convert with no onError value"))
    };
    match to {
        "string" => to_string_value(v),
        "bool" => Ok(Bson::Boolean(match v {
            Bson::String(_) => true,
            other => truthy(other),
        })),
        "int" | "long" => {
            let i: i64 = match v {
                Bson::Boolean(b) => i64::from(*b),
                Bson::String(s) => s.trim().parse::<i64>().map_err(|_| parse_err(s))?,
                Bson::DateTime(d) if to == "long" => d.timestamp_millis(),
                other => match as_num(other) {
                    Some(Num::Int(i)) => i,
                    Some(Num::Float(f)) if f.is_finite() => f.trunc() as i64,
                    _ => return Err(fail()),
                },
            };
            if to == "int" {
                i32::try_from(i)
                    .map(Bson::Int32)
                    .map_err(|_| CommandError::location(241, format!("Conversion would overflow target type in $convert with no onError value: {i}")))
            } else {
                Ok(Bson::Int64(i))
            }
        }
        "double" | "decimal" => {
            let f = match v {
                Bson::Boolean(b) => f64::from(u8::from(*b)),
                Bson::String(s) => s.trim().parse::<f64>().map_err(|_| parse_err(s))?,
                Bson::DateTime(d) => d.timestamp_millis() as f64,
                other => as_num(other).map(num_f64).ok_or_else(fail)?,
            };
            Ok(if to == "double" { Bson::Double(f) } else { f64_to_decimal(f) })
        }
        "date" => match v {
            Bson::DateTime(_) => Ok(v.clone()),
            Bson::ObjectId(o) => Ok(Bson::DateTime(o.timestamp())),
            Bson::Timestamp(t) => Ok(Bson::DateTime(DateTime::from_millis(i64::from(t.time) * 1000))),
            Bson::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| Bson::DateTime(DateTime::from_millis(d.timestamp_millis())))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map(|d| Bson::DateTime(DateTime::from_millis(d.and_utc().timestamp_millis())))
                        .ok_or_else(|| CommandError::location(241, format!("Error parsing date string '{s}'")))
                }),
            other => match as_num(other) {
                Some(Num::Int(i)) if !matches!(other, Bson::Int32(_)) => Ok(Bson::DateTime(DateTime::from_millis(i))),
                Some(Num::Float(f)) if f.is_finite() => Ok(Bson::DateTime(DateTime::from_millis(f as i64))),
                _ => Err(fail()),
            },
        },
        "objectId" => match v {
            Bson::ObjectId(_) => Ok(v.clone()),
            Bson::String(s) => bson::oid::ObjectId::parse_str(s)
                .map(Bson::ObjectId)
                .map_err(|_| CommandError::location(241, format!("Failed to parse objectId '{s}' in $convert with no onError value: Invalid string length for parsing to OID, expected 24 but found {}", s.len()))),
            _ => Err(fail()),
        },
        other => Err(CommandError::bad_value(format!("Unknown type name: {other}"))),
    }
}

pub(super) fn convert_target(v: &Bson) -> Result<String> {
    match v {
        Bson::String(s) => Ok(s.clone()),
        other => match to_i64_exact(other) {
            Some(code) => Ok(type_alias(code as i32).to_string()),
            None => Err(CommandError::bad_value("$convert's 'to' argument must be a string or number")),
        },
    }
}

fn type_of(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    Ok(Bson::String(type_name(a0).to_string()))
}

fn is_number(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    Ok(Bson::Boolean(as_num(a0).is_some()))
}

fn to_string(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    to_string_value(a0)
}

fn to_int(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    convert(a0, "int")
}

fn to_long(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    convert(a0, "long")
}

fn to_double(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    convert(a0, "double")
}

fn to_decimal(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    convert(a0, "decimal")
}

fn to_bool(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    convert(a0, "bool")
}

fn to_date(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    convert(a0, "date")
}

fn to_object_id(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    convert(a0, "objectId")
}

fn convert_named(_name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let get = |key: &str| named(args, key);
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let input = ev("input", ctx)?;
    if is_nullish(&input) {
        return match get("onNull") {
            Some(e) => e.eval(doc, ctx),
            None => Ok(Bson::Null),
        };
    }
    let to = convert_target(&ev("to", ctx)?)?;
    match convert(&input, &to) {
        Ok(v) => Ok(v),
        Err(e) => match get("onError") {
            Some(oe) => oe.eval(doc, ctx),
            None => Err(e),
        },
    }
}
