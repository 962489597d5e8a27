//! Arithmetic: `$add`, `$subtract`, `$multiply`, `$divide`, `$mod`, `$pow`, `$log`, the unary
//! math operators, `$round`/`$trunc`, the `$sum`/`$avg`/`$min`/`$max` expressions, and MongoDB's
//! numeric type promotion (also used by `$group`'s `$sum` and update's `$inc`/`$mul`).

use std::cmp::Ordering;

use bson::{Bson, DateTime};

use super::{OpFn, arg, is_nullish, spread, type_err, type_name};
use crate::compare::{Num, as_num, cmp_bson};
use crate::error::{CommandError, Result};

/// The positional operators of this module.
pub(super) const OPS: &[(&str, OpFn)] = &[
    ("$add", add),
    ("$multiply", multiply),
    ("$subtract", subtract),
    ("$divide", divide),
    ("$mod", modulo),
    ("$pow", pow_log),
    ("$log", pow_log),
    ("$abs", unary),
    ("$ceil", unary),
    ("$floor", unary),
    ("$sqrt", unary),
    ("$exp", unary),
    ("$ln", unary),
    ("$log10", unary),
    ("$round", round_trunc),
    ("$trunc", round_trunc),
    ("$sum", sum),
    ("$avg", avg),
    ("$min", min_max),
    ("$max", min_max),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Width {
    I32,
    I64,
    F64,
    Dec,
}

pub(super) fn width(v: &Bson) -> Option<Width> {
    match v {
        Bson::Int32(_) => Some(Width::I32),
        Bson::Int64(_) => Some(Width::I64),
        Bson::Double(_) => Some(Width::F64),
        Bson::Decimal128(_) => Some(Width::Dec),
        _ => None,
    }
}

pub(super) fn num_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

/// Builds a number of width `w` from a float result.
pub(super) fn float_as(w: Width, f: f64) -> Bson {
    if w == Width::Dec { f64_to_decimal(f) } else { Bson::Double(f) }
}

/// Best-effort conversion of a float to Decimal128.
pub(crate) fn f64_to_decimal(f: f64) -> Bson {
    let s = if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity".to_string() } else { "-Infinity".to_string() }
    } else {
        format!("{f:?}")
    };
    match s.parse::<bson::Decimal128>() {
        Ok(d) => Bson::Decimal128(d),
        Err(_) => Bson::Double(f),
    }
}

/// An integer result of width `w` (promoting on overflow as MongoDB does).
pub(super) fn int_as(w: Width, i: i64) -> Bson {
    match w {
        Width::I32 => match i32::try_from(i) {
            Ok(x) => Bson::Int32(x),
            Err(_) => Bson::Int64(i),
        },
        Width::I64 => Bson::Int64(i),
        Width::F64 => Bson::Double(i as f64),
        Width::Dec => f64_to_decimal(i as f64),
    }
}

/// Adds two numbers with MongoDB's type promotion.
pub(crate) fn num_add(a: &Bson, b: &Bson) -> Option<Bson> {
    let w = width(a)?.max(width(b)?);
    let (x, y) = (as_num(a)?, as_num(b)?);
    Some(match (w, x, y) {
        (Width::I32 | Width::I64, Num::Int(x), Num::Int(y)) => match x.checked_add(y) {
            Some(s) => int_as(w, s),
            None => Bson::Double(x as f64 + y as f64),
        },
        _ => float_as(w, num_f64(x) + num_f64(y)),
    })
}

/// Multiplies two numbers with MongoDB's type promotion.
pub(crate) fn num_mul(a: &Bson, b: &Bson) -> Option<Bson> {
    let w = width(a)?.max(width(b)?);
    let (x, y) = (as_num(a)?, as_num(b)?);
    Some(match (w, x, y) {
        (Width::I32 | Width::I64, Num::Int(x), Num::Int(y)) => match x.checked_mul(y) {
            Some(s) => int_as(w, s),
            None => Bson::Double(x as f64 * y as f64),
        },
        _ => float_as(w, num_f64(x) * num_f64(y)),
    })
}

pub(super) fn num_sub(a: &Bson, b: &Bson) -> Option<Bson> {
    let w = width(a)?.max(width(b)?);
    let (x, y) = (as_num(a)?, as_num(b)?);
    Some(match (w, x, y) {
        (Width::I32 | Width::I64, Num::Int(x), Num::Int(y)) => match x.checked_sub(y) {
            Some(s) => int_as(w, s),
            None => Bson::Double(x as f64 - y as f64),
        },
        _ => float_as(w, num_f64(x) - num_f64(y)),
    })
}

pub(super) fn date_ms(v: &Bson) -> Option<i64> {
    match v {
        Bson::DateTime(d) => Some(d.timestamp_millis()),
        _ => None,
    }
}

pub(super) fn to_i64_exact(v: &Bson) -> Option<i64> {
    match as_num(v)? {
        Num::Int(i) => Some(i),
        Num::Float(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.2e18 => Some(f as i64),
        Num::Float(_) => None,
    }
}

pub(super) fn int_arg(v: &Bson, op: &str) -> Result<i64> {
    to_i64_exact(v).ok_or_else(|| {
        CommandError::location(
            16034,
            format!("{op}: argument must be an integral numeric value, not {}", type_name(v)),
        )
    })
}

fn add(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let mut acc = Bson::Int32(0);
    let mut date: Option<i64> = None;
    for x in &v {
        if is_nullish(x) {
            return Ok(Bson::Null);
        }
        if let Some(ms) = date_ms(x) {
            if date.is_some() {
                return Err(CommandError::location(16612, "only one date allowed in an $add expression"));
            }
            date = Some(ms);
            continue;
        }
        acc = num_add(&acc, x)
            .ok_or_else(|| type_err(16554, "$add", "only supports numeric or date types", x))?;
    }
    match date {
        Some(ms) => {
            let add = match as_num(&acc) {
                Some(Num::Int(i)) => i,
                Some(Num::Float(f)) => f.round() as i64,
                None => 0,
            };
            Ok(Bson::DateTime(DateTime::from_millis(ms.saturating_add(add))))
        }
        None => Ok(acc),
    }
}

fn multiply(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let mut acc = Bson::Int32(1);
    for x in &v {
        if is_nullish(x) {
            return Ok(Bson::Null);
        }
        acc =
            num_mul(&acc, x).ok_or_else(|| type_err(16555, "$multiply", "only supports numeric types", x))?;
    }
    Ok(acc)
}

fn subtract(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    if is_nullish(a0) || is_nullish(a1) {
        return Ok(Bson::Null);
    }
    match (date_ms(a0), date_ms(a1)) {
        (Some(x), Some(y)) => Ok(Bson::Int64(x.saturating_sub(y))),
        (Some(x), None) => {
            let d = match as_num(a1) {
                Some(Num::Int(i)) => i,
                Some(Num::Float(f)) => f.round() as i64,
                None => return Err(type_err(16556, "cant $subtract a", type_name(a1), a0)),
            };
            Ok(Bson::DateTime(DateTime::from_millis(x.saturating_sub(d))))
        }
        _ => num_sub(a0, a1).ok_or_else(|| {
            CommandError::location(
                16556,
                format!("cant $subtract a {} from a {}", type_name(a1), type_name(a0)),
            )
        }),
    }
}

fn divide(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    if is_nullish(a0) || is_nullish(a1) {
        return Ok(Bson::Null);
    }
    let (Some(x), Some(y)) = (as_num(a0), as_num(a1)) else {
        return Err(CommandError::location(
            16609,
            format!("$divide only supports numeric types, not {} and {}", type_name(a0), type_name(a1)),
        ));
    };
    if num_f64(y) == 0.0 {
        return Err(CommandError::bad_value("can't $divide by zero"));
    }
    let w = width(a0).max(width(a1)).unwrap_or(Width::F64);
    Ok(float_as(if w == Width::Dec { Width::Dec } else { Width::F64 }, num_f64(x) / num_f64(y)))
}

fn modulo(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    if is_nullish(a0) || is_nullish(a1) {
        return Ok(Bson::Null);
    }
    let (Some(x), Some(y)) = (as_num(a0), as_num(a1)) else {
        return Err(CommandError::location(
            16611,
            format!("$mod only supports numeric types, not {} and {}", type_name(a0), type_name(a1)),
        ));
    };
    if num_f64(y) == 0.0 {
        return Err(CommandError::location(16610, "can't $mod by zero"));
    }
    let w = width(a0).max(width(a1)).unwrap_or(Width::F64);
    Ok(match (x, y) {
        (Num::Int(x), Num::Int(y)) => int_as(w, x.wrapping_rem(y)),
        _ => float_as(w, num_f64(x) % num_f64(y)),
    })
}

fn pow_log(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    if is_nullish(a0) || is_nullish(a1) {
        return Ok(Bson::Null);
    }
    let (Some(x), Some(y)) = (as_num(a0), as_num(a1)) else {
        return Err(CommandError::location(28762, format!("{name} only supports numeric types")));
    };
    if name == "$log" {
        return Ok(Bson::Double(num_f64(x).ln() / num_f64(y).ln()));
    }
    let w = width(a0).max(width(a1)).unwrap_or(Width::F64);
    if let (Num::Int(b), Num::Int(e)) = (x, y)
        && (0..=u32::MAX as i64).contains(&e)
        && let Some(r) = b.checked_pow(e as u32)
    {
        return Ok(int_as(w, r));
    }
    Ok(float_as(w.max(Width::F64), num_f64(x).powf(num_f64(y))))
}

fn unary(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    if is_nullish(a0) {
        return Ok(Bson::Null);
    }
    let x = as_num(a0).ok_or_else(|| type_err(28765, name, "only supports numeric types", a0))?;
    let w = width(a0).unwrap_or(Width::F64);
    Ok(match (name, x) {
        ("$abs", Num::Int(i)) => match i.checked_abs() {
            Some(r) => int_as(w, r),
            None => Bson::Double((i as f64).abs()),
        },
        ("$ceil" | "$floor", Num::Int(_)) => a0.clone(),
        ("$abs", Num::Float(f)) => float_as(w, f.abs()),
        ("$ceil", Num::Float(f)) => float_as(w, f.ceil()),
        ("$floor", Num::Float(f)) => float_as(w, f.floor()),
        ("$sqrt", n) => {
            if num_f64(n) < 0.0 {
                return Err(CommandError::location(
                    28714,
                    "$sqrt's argument must be greater than or equal to 0",
                ));
            }
            Bson::Double(num_f64(n).sqrt())
        }
        ("$exp", n) => Bson::Double(num_f64(n).exp()),
        ("$ln", n) => Bson::Double(num_f64(n).ln()),
        (_, n) => Bson::Double(num_f64(n).log10()),
    })
}

fn round_trunc(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    if is_nullish(a0) {
        return Ok(Bson::Null);
    }
    let x = as_num(a0).ok_or_else(|| type_err(51081, name, "only supports numeric types", a0))?;
    let place = if v.len() > 1 { int_arg(a1, name)? } else { 0 };
    match x {
        Num::Int(i) => {
            if place >= 0 {
                return Ok(a0.clone());
            }
            let p = 10i64.checked_pow((-place) as u32).unwrap_or(i64::MAX);
            let r = if name == "$trunc" {
                i / p * p
            } else {
                let q = (i as f64 / p as f64).round_ties_even();
                (q as i64).saturating_mul(p)
            };
            Ok(int_as(width(a0).unwrap_or(Width::I64), r))
        }
        Num::Float(f) => {
            let m = 10f64.powi(place as i32);
            let r = if name == "$trunc" { (f * m).trunc() / m } else { (f * m).round_ties_even() / m };
            Ok(float_as(width(a0).unwrap_or(Width::F64), r))
        }
    }
}

fn sum(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let mut acc = Bson::Int32(0);
    for x in spread(v) {
        if let Some(s) = num_add(&acc, &x) {
            acc = s;
        }
    }
    Ok(acc)
}

fn avg(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let (mut sum, mut n) = (0.0, 0u64);
    for x in spread(v) {
        if let Some(k) = as_num(&x) {
            sum += num_f64(k);
            n += 1;
        }
    }
    Ok(if n == 0 { Bson::Null } else { Bson::Double(sum / n as f64) })
}

fn min_max(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let mut best: Option<Bson> = None;
    for x in spread(v) {
        if is_nullish(&x) {
            continue;
        }
        let better = match &best {
            None => true,
            Some(b) => {
                let o = cmp_bson(&x, b);
                if name == "$min" { o == Ordering::Less } else { o == Ordering::Greater }
            }
        };
        if better {
            best = Some(x);
        }
    }
    Ok(best.unwrap_or(Bson::Null))
}
