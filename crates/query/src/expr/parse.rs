//! Parsing an expression from BSON: the operator tables (names, arities, named arguments) and
//! mongod's parse-time errors.

use bson::{Bson, Document};

use super::object::check_set_field_name;
use super::{Expr, is_missing};
use crate::error::{CommandError, Result};

/// Operators with positional arguments and their arity (min, max; `usize::MAX` = variadic).
pub(super) const POSITIONAL: &[(&str, usize, usize)] = &[
    ("$add", 0, usize::MAX),
    ("$multiply", 0, usize::MAX),
    ("$subtract", 2, 2),
    ("$divide", 2, 2),
    ("$mod", 2, 2),
    ("$pow", 2, 2),
    ("$log", 2, 2),
    ("$abs", 1, 1),
    ("$ceil", 1, 1),
    ("$floor", 1, 1),
    ("$sqrt", 1, 1),
    ("$exp", 1, 1),
    ("$ln", 1, 1),
    ("$log10", 1, 1),
    ("$round", 1, 2),
    ("$trunc", 1, 2),
    ("$concat", 0, usize::MAX),
    ("$toUpper", 1, 1),
    ("$toLower", 1, 1),
    ("$substr", 3, 3),
    ("$substrBytes", 3, 3),
    ("$substrCP", 3, 3),
    ("$strLenBytes", 1, 1),
    ("$strLenCP", 1, 1),
    ("$split", 2, 2),
    ("$strcasecmp", 2, 2),
    ("$indexOfBytes", 2, 4),
    ("$indexOfCP", 2, 4),
    ("$eq", 2, 2),
    ("$ne", 2, 2),
    ("$gt", 2, 2),
    ("$gte", 2, 2),
    ("$lt", 2, 2),
    ("$lte", 2, 2),
    ("$cmp", 2, 2),
    ("$and", 0, usize::MAX),
    ("$or", 0, usize::MAX),
    ("$not", 1, 1),
    ("$cond", 3, 3),
    ("$ifNull", 2, usize::MAX),
    ("$size", 1, 1),
    ("$arrayElemAt", 2, 2),
    ("$first", 1, 1),
    ("$last", 1, 1),
    ("$in", 2, 2),
    ("$concatArrays", 0, usize::MAX),
    ("$isArray", 1, 1),
    ("$slice", 2, 3),
    ("$reverseArray", 1, 1),
    ("$range", 2, 3),
    ("$indexOfArray", 2, 4),
    ("$arrayToObject", 1, 1),
    ("$objectToArray", 1, 1),
    ("$mergeObjects", 0, usize::MAX),
    ("$sum", 0, usize::MAX),
    ("$avg", 0, usize::MAX),
    ("$min", 0, usize::MAX),
    ("$max", 0, usize::MAX),
    ("$setUnion", 0, usize::MAX),
    ("$setIntersection", 0, usize::MAX),
    ("$setDifference", 2, 2),
    ("$setEquals", 2, usize::MAX),
    ("$setIsSubset", 2, 2),
    ("$allElementsTrue", 1, 1),
    ("$anyElementTrue", 1, 1),
    ("$type", 1, 1),
    ("$toString", 1, 1),
    ("$toInt", 1, 1),
    ("$toLong", 1, 1),
    ("$toDouble", 1, 1),
    ("$toDecimal", 1, 1),
    ("$toBool", 1, 1),
    ("$toDate", 1, 1),
    ("$toObjectId", 1, 1),
    ("$isNumber", 1, 1),
    ("$year", 1, 1),
    ("$month", 1, 1),
    ("$dayOfMonth", 1, 1),
    ("$hour", 1, 1),
    ("$minute", 1, 1),
    ("$second", 1, 1),
    ("$millisecond", 1, 1),
    ("$dayOfWeek", 1, 1),
    ("$dayOfYear", 1, 1),
    ("$week", 1, 1),
];

/// Operators with named arguments: (name, required, optional).
pub(super) const NAMED: &[(&str, &[&str], &[&str])] = &[
    ("$cond", &["if", "then", "else"], &[]),
    ("$switch", &["branches"], &["default"]),
    ("$let", &["vars", "in"], &[]),
    ("$map", &["input", "in"], &["as"]),
    ("$filter", &["input", "cond"], &["as", "limit"]),
    ("$reduce", &["input", "initialValue", "in"], &[]),
    ("$dateToString", &["date"], &["format", "timezone", "onNull"]),
    ("$regexMatch", &["input", "regex"], &["options"]),
    ("$regexFind", &["input", "regex"], &["options"]),
    ("$replaceAll", &["input", "find", "replacement"], &[]),
    ("$replaceOne", &["input", "find", "replacement"], &[]),
    ("$trim", &["input"], &["chars"]),
    ("$ltrim", &["input"], &["chars"]),
    ("$rtrim", &["input"], &["chars"]),
    ("$convert", &["input", "to"], &["onError", "onNull"]),
    ("$getField", &["field"], &["input"]),
    ("$setField", &["field", "input", "value"], &[]),
    ("$unsetField", &["field", "input"], &[]),
    ("$sortArray", &["input", "sortBy"], &[]),
    ("$dateAdd", &["startDate", "unit", "amount"], &["timezone"]),
    ("$dateSubtract", &["startDate", "unit", "amount"], &["timezone"]),
    ("$dateDiff", &["startDate", "endDate", "unit"], &["timezone", "startOfWeek"]),
    ("$dateTrunc", &["date", "unit"], &["binSize", "timezone", "startOfWeek"]),
    ("$dateFromString", &["dateString"], &["format", "timezone", "onError", "onNull"]),
];

/// Date-part operators also accept `{date, timezone}`.
pub(super) const DATE_PARTS: &[&str] = &[
    "$year",
    "$month",
    "$dayOfMonth",
    "$hour",
    "$minute",
    "$second",
    "$millisecond",
    "$dayOfWeek",
    "$dayOfYear",
    "$week",
];

pub(super) fn parse_field_path(s: &str) -> Result<Vec<String>> {
    if s.is_empty() {
        return Err(CommandError::location(16872, "'$' by itself is not a valid FieldPath"));
    }
    let parts: Vec<String> = s.split('.').map(str::to_string).collect();
    if parts.iter().any(String::is_empty) {
        return Err(CommandError::location(15998, "FieldPath field names may not be empty strings."));
    }
    if parts.iter().any(|p| p.starts_with('$')) {
        return Err(CommandError::location(
            16410,
            format!(
                "FieldPath field names may not start with '$'. Consider using $getField or $setField. (in '{s}')"
            ),
        ));
    }
    Ok(parts)
}

impl Expr {
    /// Parses an expression. 168 InvalidPipelineOperator on unknown `$operators`.
    pub fn parse(v: &Bson) -> Result<Expr> {
        match v {
            Bson::String(s) => {
                if let Some(var) = s.strip_prefix("$$") {
                    let mut it = var.split('.');
                    let name = it.next().unwrap_or_default().to_string();
                    if name.is_empty() {
                        return Err(CommandError::location(16869, "empty variable name"));
                    }
                    let rest: Vec<String> = it.map(str::to_string).collect();
                    if rest.iter().any(String::is_empty) {
                        return Err(CommandError::location(
                            15998,
                            "FieldPath field names may not be empty strings.",
                        ));
                    }
                    Ok(Expr::Var(name, rest))
                } else if let Some(path) = s.strip_prefix('$') {
                    Ok(Expr::Field(parse_field_path(path)?))
                } else {
                    Ok(Expr::Literal(v.clone()))
                }
            }
            Bson::Array(items) => {
                let items: Vec<Expr> = items.iter().map(Expr::parse).collect::<Result<_>>()?;
                // An array of constants is a constant (not when an item is the missing sentinel,
                // which evaluating the array turns into null).
                if items.iter().all(|e| matches!(e, Expr::Literal(v) if !is_missing(v))) {
                    let values = items
                        .into_iter()
                        .map(|e| match e {
                            Expr::Literal(v) => v,
                            _ => Bson::Null,
                        })
                        .collect();
                    return Ok(Expr::Literal(Bson::Array(values)));
                }
                Ok(Expr::Array(items))
            }
            Bson::Document(d) => Self::parse_doc(d),
            other => Ok(Expr::Literal(other.clone())),
        }
    }

    fn parse_doc(d: &Document) -> Result<Expr> {
        let Some(first) = d.keys().next() else {
            return Ok(Expr::Object(Vec::new()));
        };
        if !first.starts_with('$') {
            let mut fields = Vec::with_capacity(d.len());
            for (k, v) in d {
                if k.starts_with('$') {
                    return Err(CommandError::location(
                        16410,
                        format!("FieldPath field names may not start with '$'. (in '{k}')"),
                    ));
                }
                if k.contains('.') {
                    return Err(CommandError::location(
                        16412,
                        format!("FieldPath field names may not contain '.'. (in '{k}')"),
                    ));
                }
                fields.push((k.clone(), Expr::parse(v)?));
            }
            return Ok(Expr::Object(fields));
        }
        if d.len() != 1 {
            return Err(CommandError::location(
                15983,
                format!(
                    "an expression specification must contain exactly one field, the name of the expression. Found {} fields in {d}",
                    d.len()
                ),
            ));
        }
        let (name, arg) = d.iter().next().map(|(k, v)| (k.as_str(), v)).unwrap_or(("", &Bson::Null));
        if name == "$literal" {
            return Ok(Expr::Literal(arg.clone()));
        }
        if name == "$rand" {
            return match arg {
                Bson::Document(a) if a.is_empty() => Ok(Expr::Op("$rand", Vec::new())),
                _ => Err(CommandError::location(3040501, "$rand not expecting an argument")),
            };
        }
        if let (Some(&(n, req, opt)), Bson::Document(args)) = (NAMED.iter().find(|(n, ..)| *n == name), arg) {
            let e = parse_named(n, req, opt, args)?;
            if let Expr::Named(op @ ("$setField" | "$unsetField"), a) = &e {
                check_set_field_name(op, a)?;
            }
            return Ok(e);
        }
        if let Some(&(n, min, max)) = POSITIONAL.iter().find(|(n, ..)| *n == name) {
            if DATE_PARTS.contains(&n)
                && let Bson::Document(args) = arg
                && args.contains_key("date")
            {
                return parse_named(n, &["date"], &["timezone"], args);
            }
            let args: Vec<Expr> = match arg {
                Bson::Array(items) => items.iter().map(Expr::parse).collect::<Result<_>>()?,
                other => vec![Expr::parse(other)?],
            };
            if args.len() < min || args.len() > max {
                let msg = if min == max {
                    format!("Expression {n} takes exactly {min} arguments. {} were passed in.", args.len())
                } else if max == usize::MAX {
                    format!(
                        "Expression {n} takes at least {min} arguments, and at most {}. {} were passed in.",
                        min,
                        args.len()
                    )
                } else {
                    format!(
                        "Expression {n} takes at least {min} arguments, and at most {max}. {} were passed in.",
                        args.len()
                    )
                };
                return Err(CommandError::location(16020, msg));
            }
            return Ok(Expr::Op(n, args));
        }
        if name == "$getField" {
            return Ok(Expr::Named("$getField", vec![("field".to_string(), Expr::parse(arg)?)]));
        }
        if NAMED.iter().any(|(n, ..)| *n == name) {
            return Err(CommandError::location(
                16020,
                format!("{name} only supports an object as its argument"),
            ));
        }
        Err(CommandError::invalid_pipeline_operator(format!("Unrecognized expression '{name}'")))
    }
}

pub(super) fn parse_named(name: &'static str, req: &[&str], opt: &[&str], args: &Document) -> Result<Expr> {
    let mut out = Vec::new();
    for (k, v) in args {
        if !req.contains(&k.as_str()) && !opt.contains(&k.as_str()) {
            return Err(CommandError::location(40181, format!("Unrecognized parameter to {name}: {k}")));
        }
        let e = match (name, k.as_str()) {
            // Names of bound variables and branch lists are not expressions.
            ("$map" | "$filter", "as") => match v {
                Bson::String(s) => Expr::Literal(Bson::String(s.clone())),
                _ => return Err(CommandError::failed_to_parse(format!("{name} 'as' must be a string"))),
            },
            ("$let", "vars") => match v {
                Bson::Document(vars) => Expr::Object(
                    vars.iter().map(|(vk, vv)| Ok((vk.clone(), Expr::parse(vv)?))).collect::<Result<_>>()?,
                ),
                _ => {
                    return Err(CommandError::location(
                        16874,
                        "invalid parameter: expected an object (vars)",
                    ));
                }
            },
            ("$switch", "branches") => {
                let Bson::Array(branches) = v else {
                    return Err(CommandError::location(40061, "$switch expected an array for 'branches'"));
                };
                let mut bs = Vec::new();
                for b in branches {
                    let Bson::Document(bd) = b else {
                        return Err(CommandError::location(
                            40062,
                            "$switch expected each branch to be an object",
                        ));
                    };
                    let (Some(c), Some(t)) = (bd.get("case"), bd.get("then")) else {
                        return Err(CommandError::location(
                            40064,
                            "$switch requires each branch have a 'case' and 'then'",
                        ));
                    };
                    bs.push(Expr::Array(vec![Expr::parse(c)?, Expr::parse(t)?]));
                }
                Expr::Array(bs)
            }
            ("$sortArray", "sortBy") => Expr::Literal(v.clone()),
            _ => Expr::parse(v)?,
        };
        out.push((k.clone(), e));
    }
    for r in req {
        if !out.iter().any(|(k, _)| k == r) {
            return Err(CommandError::location(40182, format!("Missing '{r}' parameter to {name}")));
        }
    }
    Ok(Expr::Named(name, out))
}
