//! String operators: `$concat`, case, `$substr*`, `$strLen*`, `$split`, `$strcasecmp`,
//! `$indexOf*`, `$regexMatch`/`$regexFind`, `$replaceAll`/`$replaceOne`, `$trim`s.

use std::cmp::Ordering;

use bson::Bson;

use super::arith::int_arg;
use super::types::to_string_value;
use super::{EvalCtx, Expr, NamedFn, OpFn, arg, eval_arg, is_nullish, type_err};
use crate::error::{CommandError, Result};
use crate::filter::Re;
use crate::path::Fields;

/// The positional operators of this module.
pub(super) const OPS: &[(&str, OpFn)] = &[
    ("$concat", concat),
    ("$toUpper", change_case),
    ("$toLower", change_case),
    ("$substr", substr),
    ("$substrBytes", substr),
    ("$substrCP", substr),
    ("$strLenBytes", str_len),
    ("$strLenCP", str_len),
    ("$split", split),
    ("$strcasecmp", strcasecmp),
    ("$indexOfBytes", index_of),
    ("$indexOfCP", index_of),
];

/// The operators with named arguments of this module.
pub(super) const NAMED_OPS: &[(&str, NamedFn)] = &[
    ("$regexMatch", regex),
    ("$regexFind", regex),
    ("$replaceAll", replace),
    ("$replaceOne", replace),
    ("$trim", trim),
    ("$ltrim", trim),
    ("$rtrim", trim),
];

fn substr_bytes(s: &str, start: i64, len: i64) -> Result<String> {
    let bytes = s.as_bytes();
    let start = start.max(0) as usize;
    if start >= bytes.len() {
        return Ok(String::new());
    }
    let end = if len < 0 { bytes.len() } else { start.saturating_add(len as usize).min(bytes.len()) };
    if !s.is_char_boundary(start) || !s.is_char_boundary(end) {
        return Err(CommandError::location(
            28656,
            "$substrBytes:  Invalid range, starting index is a UTF-8 continuation byte.",
        ));
    }
    Ok(s[start..end].to_string())
}

fn regex_find(pattern: &str, options: &str, s: &str) -> Result<Bson> {
    let re = Re::new(pattern, options)?;
    let raw = re.regex();
    let Some(caps) = raw.captures(s) else {
        return Ok(Bson::Null);
    };
    let Some(m) = caps.get(0) else {
        return Ok(Bson::Null);
    };
    let captures: Vec<Bson> = (1..caps.len())
        .map(|i| caps.get(i).map(|c| Bson::String(c.as_str().to_string())).unwrap_or(Bson::Null))
        .collect();
    let idx = s[..m.start()].chars().count() as i32;
    Ok(Bson::Document(bson::doc! {"match": m.as_str(), "idx": idx, "captures": captures}))
}

fn concat(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let mut s = String::new();
    for x in &v {
        match x {
            Bson::String(p) => s.push_str(p),
            Bson::Null | Bson::Undefined => return Ok(Bson::Null),
            other => return Err(type_err(16702, "$concat", "only supports strings", other)),
        }
    }
    Ok(Bson::String(s))
}

fn change_case(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let s = match &a0 {
        Bson::Null | Bson::Undefined => String::new(),
        Bson::String(s) => s.clone(),
        other => match to_string_value(other)? {
            Bson::String(s) => s,
            _ => String::new(),
        },
    };
    Ok(Bson::String(if name == "$toUpper" { s.to_ascii_uppercase() } else { s.to_ascii_lowercase() }))
}

fn substr(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    let s = match &a0 {
        Bson::Null | Bson::Undefined => return Ok(Bson::String(String::new())),
        Bson::String(s) => s.clone(),
        other => match to_string_value(other)? {
            Bson::String(s) => s,
            _ => String::new(),
        },
    };
    let start = int_arg(a1, name)?;
    let len = int_arg(v.get(2).unwrap_or(&Bson::Int32(-1)), name)?;
    if name == "$substrCP" {
        if start < 0 {
            return Err(CommandError::location(
                34455,
                "$substrCP: the starting index must be nonnegative integer.",
            ));
        }
        if len < 0 {
            return Err(CommandError::location(34456, "$substrCP: length must be a nonnegative integer."));
        }
        return Ok(Bson::String(s.chars().skip(start as usize).take(len as usize).collect()));
    }
    Ok(Bson::String(substr_bytes(&s, start, len)?))
}

fn str_len(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    match &a0 {
        Bson::String(s) => {
            Ok(Bson::Int32(if name == "$strLenBytes" { s.len() } else { s.chars().count() } as i32))
        }
        other => Err(type_err(34471, name, "requires a string argument", other)),
    }
}

fn split(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    match (&a0, &a1) {
        (Bson::Null | Bson::Undefined, _) => Ok(Bson::Null),
        (Bson::String(s), Bson::String(d)) => {
            if d.is_empty() {
                return Err(CommandError::location(40087, "$split requires a non-empty separator"));
            }
            Ok(Bson::Array(s.split(d.as_str()).map(|p| Bson::String(p.to_string())).collect()))
        }
        (Bson::String(_), other) => Err(type_err(
            40086,
            "$split",
            "requires an expression that evaluates to a string as a second argument",
            other,
        )),
        (other, _) => Err(type_err(
            40085,
            "$split",
            "requires an expression that evaluates to a string as a first argument",
            other,
        )),
    }
}

fn strcasecmp(_name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    let f = |x: &Bson| -> Result<String> {
        Ok(match x {
            Bson::Null | Bson::Undefined => String::new(),
            Bson::String(s) => s.to_ascii_lowercase(),
            other => match to_string_value(other)? {
                Bson::String(s) => s.to_ascii_lowercase(),
                _ => String::new(),
            },
        })
    };
    Ok(Bson::Int32(match f(a0)?.cmp(&f(a1)?) {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }))
}

fn index_of(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    let s = match &a0 {
        Bson::Null | Bson::Undefined => return Ok(Bson::Null),
        Bson::String(s) => s,
        other => return Err(type_err(40091, name, "requires a string as the first argument", other)),
    };
    let Bson::String(sub) = &a1 else {
        return Err(type_err(40092, name, "requires a string as the second argument", a1));
    };
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let unit_len = if name == "$indexOfBytes" { s.len() } else { chars.len() };
    let start = match v.get(2) {
        Some(x) => int_arg(x, name)?.max(0) as usize,
        None => 0,
    };
    let end = match v.get(3) {
        Some(x) => (int_arg(x, name)?.max(0) as usize).min(unit_len),
        None => unit_len,
    };
    let to_byte = |u: usize| -> usize {
        if name == "$indexOfBytes" { u } else { chars.get(u).map(|(b, _)| *b).unwrap_or(s.len()) }
    };
    if start > end {
        return Ok(Bson::Int32(-1));
    }
    let (bs, be) = (to_byte(start), to_byte(end));
    if !s.is_char_boundary(bs) || !s.is_char_boundary(be) {
        return Ok(Bson::Int32(-1));
    }
    Ok(Bson::Int32(match s[bs..be].find(sub.as_str()) {
        Some(pos) => {
            let b = bs + pos;
            if name == "$indexOfBytes" {
                b as i32
            } else {
                chars.iter().position(|(i, _)| *i == b).unwrap_or(0) as i32
            }
        }
        None => -1,
    }))
}

fn regex(name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let input = ev("input", ctx)?;
    let regex = ev("regex", ctx)?;
    let opts = ev("options", ctx)?;
    let (pattern, mut options) = match &regex {
        Bson::String(s) => (s.clone(), String::new()),
        Bson::RegularExpression(r) => (r.pattern.clone(), r.options.clone()),
        Bson::Null | Bson::Undefined => {
            return Ok(if name == "$regexMatch" { Bson::Boolean(false) } else { Bson::Null });
        }
        other => {
            return Err(type_err(51105, name, "needs 'regex' to be of type string or regex", other));
        }
    };
    if let Bson::String(o) = &opts {
        options.push_str(o);
    }
    let re = Re::new(&pattern, &options)?;
    let s = match &input {
        Bson::String(s) => s.clone(),
        Bson::Null | Bson::Undefined => {
            return Ok(if name == "$regexMatch" { Bson::Boolean(false) } else { Bson::Null });
        }
        other => return Err(type_err(51104, name, "needs 'input' to be of type string", other)),
    };
    if name == "$regexMatch" {
        return Ok(Bson::Boolean(re.is_match(&s)));
    }
    regex_find(&pattern, &options, &s)
}

fn replace(name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let input = ev("input", ctx)?;
    let find = ev("find", ctx)?;
    let rep = ev("replacement", ctx)?;
    if is_nullish(&input) || is_nullish(&find) || is_nullish(&rep) {
        return Ok(Bson::Null);
    }
    match (&input, &find, &rep) {
        (Bson::String(i), Bson::String(f), Bson::String(r)) => Ok(Bson::String(if name == "$replaceAll" {
            if f.is_empty() { i.clone() } else { i.replace(f.as_str(), r) }
        } else {
            i.replacen(f.as_str(), r, 1)
        })),
        _ => Err(CommandError::location(
            51746,
            format!("{name} requires that 'input', 'find' and 'replacement' be strings"),
        )),
    }
}

fn trim(name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let input = ev("input", ctx)?;
    let s = match &input {
        Bson::Null | Bson::Undefined => return Ok(Bson::Null),
        Bson::String(s) => s.clone(),
        other => return Err(type_err(50699, name, "requires its input to be a string", other)),
    };
    let chars: Vec<char> = match ev("chars", ctx)? {
        Bson::String(c) => c.chars().collect(),
        Bson::Null | Bson::Undefined => {
            vec![' ', '\t', '\n', '\r', '\u{0b}', '\u{0c}', '\0', '\u{a0}']
        }
        other => return Err(type_err(50700, name, "requires 'chars' to be a string", &other)),
    };
    let f = |c: char| chars.contains(&c);
    Ok(Bson::String(match name {
        "$trim" => s.trim_matches(f).to_string(),
        "$ltrim" => s.trim_start_matches(f).to_string(),
        _ => s.trim_end_matches(f).to_string(),
    }))
}
