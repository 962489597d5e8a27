//! The query matcher: parses a MongoDB filter document into a tree and evaluates it.
//!
//! Semantics follow MongoDB's: dotted paths traverse arrays of documents; a predicate on a path
//! holds when it holds for any value found there, where a leaf array is tried both as a whole
//! and element by element (except for `$size`, `$elemMatch`, `$exists`); `null` equality also
//! matches missing fields; comparisons are type-bracketed (`{$gt: 5}` never matches a string);
//! negations (`$ne`, `$nin`, `$not`, `$nor`) are the complement of the positive predicate.
//! A parsed [`Filter`] is immutable, `Clone + Send + Sync`.

use std::cmp::Ordering;

use bson::{Bson, Document};

use crate::compare::{Num, as_num, bson_eq, canonical_type_order, cmp_bson};
use crate::error::{CommandError, Result};
use crate::expr::{EvalCtx, Expr};
use crate::path::{Fields, as_index, collect_fields, get_parts_exact, set_path};

/// A bound a planner can use on one indexed path. Bounds are a superset of the matching
/// values: documents found through them must still be checked with [`Filter::matches`].
#[derive(Debug, Clone, PartialEq)]
pub enum IndexPredicate {
    /// The path equals this value.
    Eq(Bson),
    /// The path lies in a range; `None` means unbounded on that side (within MongoDB's type
    /// bracket of the other bound, which the re-check enforces).
    Range { lo: Option<Bson>, lo_incl: bool, hi: Option<Bson>, hi_incl: bool },
    /// The path equals one of these values.
    In(Vec<Bson>),
}

/// A parsed query filter.
#[derive(Debug, Clone)]
pub struct Filter {
    root: Node,
    empty: bool,
    /// The command's `let` variables, for `$expr` ([`Filter::with_let`]).
    lets: Option<std::sync::Arc<EvalCtx>>,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Nor(Vec<Node>),
    Path { path: String, parts: Vec<String>, pred: Pred },
    Expr(Box<Expr>),
    Const(bool),
}

impl Node {
    /// [`crate::vars::check_expr`] over every `$expr`.
    fn check_vars(&self, scope: &mut Vec<String>) -> Result<()> {
        match self {
            Node::And(ns) | Node::Or(ns) | Node::Nor(ns) => ns.iter().try_for_each(|n| n.check_vars(scope)),
            Node::Expr(e) => crate::vars::check_expr(e, scope),
            Node::Path { .. } | Node::Const(_) => Ok(()),
        }
    }

    /// Top-level fields read (predicates under a path, `$elemMatch` included, read only below it).
    fn add_deps(&self, deps: &mut crate::aggregate::Deps) {
        match self {
            Node::And(ns) | Node::Or(ns) | Node::Nor(ns) => ns.iter().for_each(|n| n.add_deps(deps)),
            Node::Path { parts, .. } => match parts.first() {
                Some(f) => deps.add(f),
                None => deps.set_whole(),
            },
            Node::Expr(e) => e.add_deps(deps),
            Node::Const(_) => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CmpOp {
    fn holds(self, o: Ordering) -> bool {
        match self {
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Gte => o != Ordering::Less,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Lte => o != Ordering::Greater,
        }
    }
}

/// A compiled regular expression with its MongoDB source.
#[derive(Debug, Clone)]
pub(crate) struct Re {
    pattern: String,
    options: String,
    re: regex::Regex,
}

impl Re {
    pub(crate) fn new(pattern: &str, options: &str) -> Result<Re> {
        let mut b = regex::RegexBuilder::new(pattern);
        for c in options.chars() {
            match c {
                'i' => {
                    b.case_insensitive(true);
                }
                'm' => {
                    b.multi_line(true);
                }
                's' => {
                    b.dot_matches_new_line(true);
                }
                'x' => {
                    b.ignore_whitespace(true);
                }
                'u' => {}
                other => {
                    return Err(CommandError::location(
                        51108,
                        format!("invalid flag in regex options: {other}"),
                    ));
                }
            }
        }
        let re = b
            .build()
            .map_err(|e| CommandError::location(51091, format!("Regular expression is invalid: {e}")))?;
        Ok(Re { pattern: pattern.to_string(), options: options.to_string(), re })
    }

    pub(crate) fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }

    pub(crate) fn regex(&self) -> &regex::Regex {
        &self.re
    }

    fn matches(&self, v: &Bson) -> bool {
        match v {
            Bson::String(s) | Bson::Symbol(s) => self.re.is_match(s),
            Bson::RegularExpression(r) => r.pattern == self.pattern && r.options == self.options,
            _ => false,
        }
    }
}

/// A type selector of `$type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeSel {
    Code(i32),
    Number,
}

#[derive(Debug, Clone)]
pub(crate) enum Pred {
    Eq(Bson),
    Cmp(CmpOp, Bson),
    In(Vec<Bson>, Vec<Re>),
    Exists(bool),
    Type(Vec<TypeSel>),
    Regex(Re),
    ElemMatchValue(Vec<Pred>),
    ElemMatchDoc(Box<Node>),
    Size(i64),
    Mod(i64, i64),
    /// `$bitsAllSet` (0), `$bitsAnySet` (1), `$bitsAllClear` (2), `$bitsAnyClear` (3).
    Bits(u8, u64),
    /// Complement of the conjunction, evaluated at the path level.
    Not(Vec<Pred>),
    /// Conjunction, evaluated at the path level (`$all` is one).
    And(Vec<Pred>),
    /// Matches nothing (empty `$all`).
    Never,
}

/// The BSON type number MongoDB's `$type` uses for a value.
pub fn bson_type_code(v: &Bson) -> i32 {
    match v {
        Bson::Double(_) => 1,
        Bson::String(_) => 2,
        Bson::Document(_) => 3,
        Bson::Array(_) => 4,
        Bson::Binary(_) => 5,
        Bson::Undefined => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Null => 10,
        Bson::RegularExpression(_) => 11,
        Bson::DbPointer(_) => 12,
        Bson::JavaScriptCode(_) => 13,
        Bson::Symbol(_) => 14,
        Bson::JavaScriptCodeWithScope(_) => 15,
        Bson::Int32(_) => 16,
        Bson::Timestamp(_) => 17,
        Bson::Int64(_) => 18,
        Bson::Decimal128(_) => 19,
        Bson::MinKey => -1,
        Bson::MaxKey => 127,
    }
}

/// MongoDB's type alias for a type code (`"double"`, `"string"`, ...).
pub fn type_alias(code: i32) -> &'static str {
    match code {
        1 => "double",
        2 => "string",
        3 => "object",
        4 => "array",
        5 => "binData",
        6 => "undefined",
        7 => "objectId",
        8 => "bool",
        9 => "date",
        10 => "null",
        11 => "regex",
        12 => "dbPointer",
        13 => "javascript",
        14 => "symbol",
        15 => "javascriptWithScope",
        16 => "int",
        17 => "timestamp",
        18 => "long",
        19 => "decimal",
        -1 => "minKey",
        127 => "maxKey",
        _ => "unknown",
    }
}

fn alias_code(name: &str) -> Option<i32> {
    Some(match name {
        "double" => 1,
        "string" => 2,
        "object" => 3,
        "array" => 4,
        "binData" => 5,
        "undefined" => 6,
        "objectId" => 7,
        "bool" => 8,
        "date" => 9,
        "null" => 10,
        "regex" => 11,
        "dbPointer" => 12,
        "javascript" => 13,
        "symbol" => 14,
        "javascriptWithScope" => 15,
        "int" => 16,
        "timestamp" => 17,
        "long" => 18,
        "decimal" => 19,
        "minKey" => -1,
        "maxKey" => 127,
        _ => return None,
    })
}

fn parse_type_sel(v: &Bson) -> Result<TypeSel> {
    match v {
        Bson::String(s) if s == "number" => Ok(TypeSel::Number),
        Bson::String(s) => alias_code(s)
            .map(TypeSel::Code)
            .ok_or_else(|| CommandError::bad_value(format!("Unknown type name alias: {s}"))),
        other => match as_num(other) {
            Some(n) => {
                let code = match n {
                    Num::Int(i) => i,
                    Num::Float(f) if f.fract() == 0.0 => f as i64,
                    Num::Float(f) => {
                        return Err(CommandError::bad_value(format!("Invalid numerical type code: {f}")));
                    }
                };
                if (1..=19).contains(&code) || code == -1 || code == 127 {
                    Ok(TypeSel::Code(code as i32))
                } else {
                    Err(CommandError::bad_value(format!("Invalid numerical type code: {code}")))
                }
            }
            None => Err(CommandError::type_mismatch("type must be represented as a number or a string")),
        },
    }
}

fn type_matches(sels: &[TypeSel], v: &Bson) -> bool {
    let code = bson_type_code(v);
    sels.iter().any(|s| match s {
        TypeSel::Number => matches!(code, 1 | 16 | 18 | 19),
        TypeSel::Code(c) => *c == code,
    })
}

/// Truthiness of a `$exists`-style flag.
pub(crate) fn truthy_flag(v: &Bson) -> bool {
    match v {
        Bson::Boolean(b) => *b,
        Bson::Null | Bson::Undefined => false,
        other => match as_num(other) {
            Some(Num::Int(i)) => i != 0,
            Some(Num::Float(f)) => f != 0.0,
            None => true,
        },
    }
}

fn is_nullish(v: &Bson) -> bool {
    matches!(v, Bson::Null | Bson::Undefined)
}

impl Pred {
    /// Whether this predicate also tries the elements of a leaf array.
    fn expands(&self) -> bool {
        matches!(
            self,
            Pred::Eq(_)
                | Pred::Cmp(..)
                | Pred::In(..)
                | Pred::Type(_)
                | Pred::Regex(_)
                | Pred::Mod(..)
                | Pred::Bits(..)
        )
    }

    /// The predicate on one value, without looking into arrays.
    fn matches_single(&self, v: &Bson) -> bool {
        match self {
            Pred::Eq(x) => {
                if is_nullish(x) {
                    is_nullish(v)
                } else {
                    bson_eq(v, x)
                }
            }
            Pred::Cmp(op, x) => cmp_single(*op, v, x),
            Pred::In(vals, res) => {
                vals.iter().any(|x| if is_nullish(x) { is_nullish(v) } else { bson_eq(v, x) })
                    || res.iter().any(|r| r.matches(v))
            }
            Pred::Exists(b) => *b,
            Pred::Type(sels) => type_matches(sels, v),
            Pred::Regex(r) => r.matches(v),
            Pred::ElemMatchValue(preds) => match v {
                Bson::Array(a) => a.iter().any(|e| preds.iter().all(|p| p.matches_elem(e))),
                _ => false,
            },
            Pred::ElemMatchDoc(node) => match v {
                Bson::Array(a) => a.iter().any(|e| match e {
                    Bson::Document(d) => node.matches(d, None),
                    _ => false,
                }),
                _ => false,
            },
            Pred::Size(n) => matches!(v, Bson::Array(a) if a.len() as i64 == *n),
            Pred::Mod(d, r) => match as_num(v) {
                Some(Num::Int(i)) => i.wrapping_rem(*d) == *r,
                Some(Num::Float(f)) if f.is_finite() => (f.trunc() as i64).wrapping_rem(*d) == *r,
                _ => false,
            },
            Pred::Bits(kind, mask) => {
                let bits = match v {
                    Bson::Int32(i) => i64::from(*i) as u64,
                    Bson::Int64(i) => *i as u64,
                    Bson::Double(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => (*f as i64) as u64,
                    Bson::Binary(b) => b
                        .bytes
                        .iter()
                        .take(8)
                        .enumerate()
                        .fold(0u64, |acc, (i, byte)| acc | (u64::from(*byte) << (8 * i))),
                    _ => return false,
                };
                match kind {
                    0 => bits & mask == *mask,
                    1 => bits & mask != 0,
                    2 => bits & mask == 0,
                    _ => bits & mask != *mask,
                }
            }
            Pred::Not(ps) => !ps.iter().all(|p| p.matches_value(Some(v))),
            Pred::And(ps) => ps.iter().all(|p| p.matches_value(Some(v))),
            Pred::Never => false,
        }
    }

    /// The predicate on an array element inside `$elemMatch` (value form).
    fn matches_elem(&self, v: &Bson) -> bool {
        match self {
            Pred::Not(ps) => !ps.iter().all(|p| p.matches_elem(v)),
            Pred::And(ps) => ps.iter().all(|p| p.matches_elem(v)),
            other => other.matches_value(Some(v)),
        }
    }

    /// The predicate on one value found at a path (`None`: the path is missing there), trying a
    /// leaf array both whole and element by element.
    pub(crate) fn matches_value(&self, v: Option<&Bson>) -> bool {
        match v {
            None => match self {
                Pred::Eq(x) => is_nullish(x),
                Pred::Cmp(CmpOp::Gte | CmpOp::Lte, x) => is_nullish(x),
                Pred::In(vals, _) => vals.iter().any(is_nullish),
                Pred::Exists(b) => !*b,
                Pred::Not(ps) => !ps.iter().all(|p| p.matches_value(None)),
                Pred::And(ps) => ps.iter().all(|p| p.matches_value(None)),
                _ => false,
            },
            Some(v) => {
                if self.matches_single(v) {
                    return true;
                }
                if self.expands()
                    && let Bson::Array(a) = v
                {
                    return a.iter().any(|e| self.matches_single(e));
                }
                false
            }
        }
    }
}

fn cmp_single(op: CmpOp, v: &Bson, x: &Bson) -> bool {
    if matches!(x, Bson::MinKey | Bson::MaxKey) {
        return op.holds(cmp_bson(v, x));
    }
    if is_nullish(x) {
        return is_nullish(v) && matches!(op, CmpOp::Gte | CmpOp::Lte);
    }
    if canonical_type_order(v) != canonical_type_order(x) {
        return false;
    }
    // NaN only compares equal to NaN; every other comparison involving NaN is false.
    let is_nan = |b: &Bson| matches!(as_num(b), Some(Num::Float(f)) if f.is_nan());
    let (v_nan, x_nan) = (is_nan(v), is_nan(x));
    if v_nan || x_nan {
        return v_nan && x_nan && matches!(op, CmpOp::Gte | CmpOp::Lte);
    }
    op.holds(cmp_bson(v, x))
}

/// Matches one path predicate against a document.
fn match_path(doc: &dyn Fields, parts: &[String], pred: &Pred) -> bool {
    match pred {
        Pred::Not(ps) => !ps.iter().all(|p| match_path(doc, parts, p)),
        Pred::And(ps) => ps.iter().all(|p| match_path(doc, parts, p)),
        _ => match lone_value(doc, parts) {
            // The path crosses no array: it has one value (or none), read in place.
            Some(v) => match pred {
                Pred::Exists(b) => v.is_some() == *b,
                _ => pred.matches_value(v),
            },
            None => match_path_collected(doc, parts, pred),
        },
    }
}

/// [`match_path`] for a leaf predicate over every value the path reaches (arrays expanded).
fn match_path_collected(doc: &dyn Fields, parts: &[String], pred: &Pred) -> bool {
    let mut out = Vec::new();
    collect_fields(doc, parts, &mut out);
    match pred {
        Pred::Exists(b) => out.iter().any(Option::is_some) == *b,
        _ => out.into_iter().any(|v| pred.matches_value(v)),
    }
}

/// The one value `collect_fields` would find at `parts` (`Some(None)`: missing), when the path
/// reaches its last component through documents only; `None` when it meets an array before
/// that (the values are then collected) or is empty.
fn lone_value<'a>(doc: &'a dyn Fields, parts: &[String]) -> Option<Option<&'a Bson>> {
    let (first, rest) = parts.split_first()?;
    let Some(mut cur) = doc.field(first) else {
        return Some(None);
    };
    for p in rest {
        match cur {
            Bson::Document(d) => match d.get(p) {
                Some(v) => cur = v,
                None => return Some(None),
            },
            Bson::Array(_) => return None,
            _ => return Some(None),
        }
    }
    Some(Some(cur))
}

impl Node {
    /// Infallible matching: an `$expr` that fails to evaluate does not match.
    pub(crate) fn matches(&self, doc: &dyn Fields, ctx: Option<&EvalCtx>) -> bool {
        self.try_matches(doc, ctx).unwrap_or(false)
    }

    /// Matching that reports `$expr` evaluation errors.
    pub(crate) fn try_matches(&self, doc: &dyn Fields, ctx: Option<&EvalCtx>) -> Result<bool> {
        Ok(match self {
            Node::And(ns) => {
                for n in ns {
                    if !n.try_matches(doc, ctx)? {
                        return Ok(false);
                    }
                }
                true
            }
            Node::Or(ns) => {
                for n in ns {
                    if n.try_matches(doc, ctx)? {
                        return Ok(true);
                    }
                }
                false
            }
            Node::Nor(ns) => {
                for n in ns {
                    if n.try_matches(doc, ctx)? {
                        return Ok(false);
                    }
                }
                true
            }
            Node::Path { parts, pred, .. } => match_path(doc, parts, pred),
            Node::Expr(e) => {
                let mut local = match ctx {
                    Some(c) => c.clone(),
                    None => EvalCtx::new(),
                };
                crate::expr::truthy(&e.eval(doc, &mut local)?)
            }
            Node::Const(b) => *b,
        })
    }
}

fn check_path(path: &str) -> Result<()> {
    if path.is_empty() {
        return Err(CommandError::bad_value("empty field name in filter"));
    }
    Ok(())
}

pub(crate) fn parse_node(filter: &Document) -> Result<Node> {
    let mut children = Vec::new();
    for (k, v) in filter {
        if let Some(op) = k.strip_prefix('$') {
            match op {
                "and" | "or" | "nor" => {
                    let arr = match v {
                        Bson::Array(a) if !a.is_empty() => a,
                        _ => {
                            return Err(CommandError::bad_value(format!("${op} must be a nonempty array")));
                        }
                    };
                    let mut subs = Vec::with_capacity(arr.len());
                    for e in arr {
                        match e {
                            Bson::Document(d) => subs.push(parse_node(d)?),
                            _ => {
                                return Err(CommandError::bad_value(format!(
                                    "${op} argument's entries must be objects"
                                )));
                            }
                        }
                    }
                    children.push(match op {
                        "and" => Node::And(subs),
                        "or" => Node::Or(subs),
                        _ => Node::Nor(subs),
                    });
                }
                "expr" => children.push(Node::Expr(Box::new(Expr::parse(v)?))),
                "comment" => {}
                "alwaysTrue" => children.push(Node::Const(true)),
                "alwaysFalse" => children.push(Node::Const(false)),
                "where" => {
                    return Err(CommandError::bad_value("$where is not supported by this server"));
                }
                _ => {
                    return Err(CommandError::bad_value(format!("unknown top level operator: {k}")));
                }
            }
        } else {
            check_path(k)?;
            let pred = parse_field_value(v)?;
            children.push(Node::Path {
                path: k.clone(),
                parts: k.split('.').map(str::to_string).collect(),
                pred,
            });
        }
    }
    Ok(if children.len() == 1 { children.pop().unwrap_or(Node::Const(true)) } else { Node::And(children) })
}

/// Whether a document is an operator object (`{$gt: 1, ...}`) rather than a literal.
fn is_operator_doc(d: &Document) -> bool {
    d.keys().next().is_some_and(|k| k.starts_with('$'))
}

/// Parses the right-hand side of `{path: value}`.
pub(crate) fn parse_field_value(v: &Bson) -> Result<Pred> {
    match v {
        Bson::Document(d) if is_operator_doc(d) => parse_operator_doc(d),
        Bson::RegularExpression(r) => Ok(Pred::Regex(Re::new(&r.pattern, &r.options)?)),
        other => Ok(Pred::Eq(other.clone())),
    }
}

fn one_or_and(mut preds: Vec<Pred>) -> Pred {
    if preds.len() == 1 { preds.pop().unwrap_or(Pred::And(Vec::new())) } else { Pred::And(preds) }
}

fn number_arg(v: &Bson, what: &str) -> Result<Num> {
    as_num(v).ok_or_else(|| CommandError::bad_value(format!("{what} needs a number")))
}

fn parse_in_list(op: &str, v: &Bson) -> Result<Pred> {
    let Bson::Array(items) = v else {
        return Err(CommandError::bad_value(format!("{op} needs an array")));
    };
    let mut vals = Vec::new();
    let mut res = Vec::new();
    for it in items {
        match it {
            Bson::RegularExpression(r) => res.push(Re::new(&r.pattern, &r.options)?),
            Bson::Document(d) if is_operator_doc(d) => {
                return Err(CommandError::bad_value(format!("cannot nest $ under {op}")));
            }
            other => vals.push(other.clone()),
        }
    }
    Ok(Pred::In(vals, res))
}

/// Parses `{$op: arg, ...}` applied to one path.
pub(crate) fn parse_operator_doc(d: &Document) -> Result<Pred> {
    let mut preds = Vec::new();
    let options = d.get("$options");
    if options.is_some() && !d.contains_key("$regex") {
        return Err(CommandError::bad_value("$options needs a $regex"));
    }
    for (op, arg) in d {
        let p = match op.as_str() {
            "$eq" => Pred::Eq(arg.clone()),
            "$ne" => {
                if matches!(arg, Bson::RegularExpression(_)) {
                    return Err(CommandError::bad_value("Can't have regex as arg to $ne."));
                }
                Pred::Not(vec![Pred::Eq(arg.clone())])
            }
            "$gt" => Pred::Cmp(CmpOp::Gt, arg.clone()),
            "$gte" => Pred::Cmp(CmpOp::Gte, arg.clone()),
            "$lt" => Pred::Cmp(CmpOp::Lt, arg.clone()),
            "$lte" => Pred::Cmp(CmpOp::Lte, arg.clone()),
            "$in" => parse_in_list("$in", arg)?,
            "$nin" => Pred::Not(vec![parse_in_list("$nin", arg)?]),
            "$exists" => Pred::Exists(truthy_flag(arg)),
            "$type" => match arg {
                Bson::Array(items) => {
                    Pred::Type(items.iter().map(parse_type_sel).collect::<Result<Vec<_>>>()?)
                }
                other => Pred::Type(vec![parse_type_sel(other)?]),
            },
            "$regex" => parse_regex(arg, options)?,
            "$options" => continue,
            "$elemMatch" => parse_elem_match(arg)?,
            "$size" => parse_size(arg)?,
            "$all" => parse_all(arg)?,
            "$mod" => parse_mod(arg)?,
            "$not" => match arg {
                Bson::RegularExpression(r) => Pred::Not(vec![Pred::Regex(Re::new(&r.pattern, &r.options)?)]),
                Bson::Document(sub) if sub.is_empty() => {
                    return Err(CommandError::bad_value("$not cannot be empty"));
                }
                Bson::Document(sub) if is_operator_doc(sub) => match parse_operator_doc(sub)? {
                    Pred::And(ps) => Pred::Not(ps),
                    p => Pred::Not(vec![p]),
                },
                _ => return Err(CommandError::bad_value("$not needs a regex or a document")),
            },
            "$bitsAllSet" | "$bitsAnySet" | "$bitsAllClear" | "$bitsAnyClear" => {
                let kind = match op.as_str() {
                    "$bitsAllSet" => 0,
                    "$bitsAnySet" => 1,
                    "$bitsAllClear" => 2,
                    _ => 3,
                };
                Pred::Bits(kind, parse_bitmask(op, arg)?)
            }
            "$comment" => continue,
            other => {
                return Err(CommandError::bad_value(format!("unknown operator: {other}")));
            }
        };
        preds.push(p);
    }
    Ok(one_or_and(preds))
}

/// `$regex`'s predicate.
fn parse_regex(arg: &Bson, options: Option<&Bson>) -> Result<Pred> {
    let opts = match options {
        Some(Bson::String(s)) => Some(s.as_str()),
        Some(_) => return Err(CommandError::bad_value("$options has to be a string")),
        None => None,
    };
    Ok(match arg {
        Bson::String(p) => Pred::Regex(Re::new(p, opts.unwrap_or(""))?),
        Bson::RegularExpression(r) => {
            if opts.is_some() && !r.options.is_empty() {
                return Err(CommandError::bad_value("options set in both $regex and $options"));
            }
            Pred::Regex(Re::new(&r.pattern, opts.unwrap_or(&r.options))?)
        }
        _ => return Err(CommandError::bad_value("$regex has to be a string")),
    })
}

/// `$elemMatch`'s predicate.
fn parse_elem_match(arg: &Bson) -> Result<Pred> {
    let Bson::Document(sub) = arg else {
        return Err(CommandError::bad_value("$elemMatch needs an Object"));
    };
    let value_form = sub
        .keys()
        .next()
        .is_some_and(|k| k.starts_with('$') && !matches!(k.as_str(), "$and" | "$or" | "$nor" | "$expr"));
    Ok(if value_form {
        match parse_operator_doc(sub)? {
            Pred::And(ps) => Pred::ElemMatchValue(ps),
            p => Pred::ElemMatchValue(vec![p]),
        }
    } else {
        Pred::ElemMatchDoc(Box::new(parse_node(sub)?))
    })
}

/// `$size`'s predicate.
fn parse_size(arg: &Bson) -> Result<Pred> {
    let n = match number_arg(arg, "$size")? {
        Num::Int(i) => i,
        Num::Float(f) if f.fract() == 0.0 => f as i64,
        Num::Float(_) => {
            return Err(CommandError::bad_value("$size must be a whole number"));
        }
    };
    if n < 0 {
        return Err(CommandError::bad_value("$size may not be negative"));
    }
    Ok(Pred::Size(n))
}

/// `$all`'s predicate.
fn parse_all(arg: &Bson) -> Result<Pred> {
    let Bson::Array(items) = arg else {
        return Err(CommandError::bad_value("$all needs an array"));
    };
    Ok(if items.is_empty() {
        Pred::Never
    } else {
        let mut ps = Vec::new();
        for it in items {
            ps.push(match it {
                Bson::Document(sd) if sd.keys().next().is_some_and(|k| k == "$elemMatch") => {
                    parse_operator_doc(sd)?
                }
                Bson::Document(sd) if is_operator_doc(sd) => {
                    return Err(CommandError::bad_value("no $ expressions in $all"));
                }
                Bson::RegularExpression(r) => Pred::Regex(Re::new(&r.pattern, &r.options)?),
                other => Pred::Eq(other.clone()),
            });
        }
        Pred::And(ps)
    })
}

/// `$mod`'s predicate.
fn parse_mod(arg: &Bson) -> Result<Pred> {
    let Bson::Array(items) = arg else {
        return Err(CommandError::bad_value("malformed mod, needs to be an array"));
    };
    if items.len() < 2 {
        return Err(CommandError::bad_value("malformed mod, not enough elements"));
    }
    if items.len() > 2 {
        return Err(CommandError::bad_value("malformed mod, too many elements"));
    }
    let to_i = |v: &Bson| -> Result<i64> {
        match number_arg(v, "$mod")? {
            Num::Int(i) => Ok(i),
            Num::Float(f) if f.is_finite() => Ok(f.trunc() as i64),
            Num::Float(_) => {
                Err(CommandError::bad_value("malformed mod, divisor and remainder must be finite"))
            }
        }
    };
    let d = to_i(&items[0])?;
    let r = to_i(&items[1])?;
    if d == 0 {
        return Err(CommandError::bad_value("divisor cannot be 0"));
    }
    Ok(Pred::Mod(d, r))
}

fn parse_bitmask(op: &str, arg: &Bson) -> Result<u64> {
    match arg {
        Bson::Array(positions) => {
            let mut mask = 0u64;
            for p in positions {
                let Some(Num::Int(i)) = as_num(p).map(|n| match n {
                    Num::Float(f) if f.fract() == 0.0 => Num::Int(f as i64),
                    other => other,
                }) else {
                    return Err(CommandError::bad_value(format!("bit positions in {op} must be integers")));
                };
                if i < 0 {
                    return Err(CommandError::bad_value(format!("bit positions in {op} must be >= 0")));
                }
                if i < 64 {
                    mask |= 1u64 << i;
                }
            }
            Ok(mask)
        }
        Bson::Binary(b) => Ok(b
            .bytes
            .iter()
            .take(8)
            .enumerate()
            .fold(0u64, |acc, (i, byte)| acc | (u64::from(*byte) << (8 * i)))),
        other => match as_num(other) {
            Some(Num::Int(i)) if i >= 0 => Ok(i as u64),
            Some(Num::Float(f)) if f >= 0.0 && f.fract() == 0.0 && f < 1.8e19 => Ok(f as u64),
            _ => Err(CommandError::bad_value(format!(
                "{op} takes an Array, a number, or a BinData but received: {other}"
            ))),
        },
    }
}

/// A matcher for one array element, as `$pull` and `$elemMatch`-like contexts need: a literal
/// (equality), an operator object (value predicate), or a query on element documents.
#[derive(Debug, Clone)]
pub(crate) enum ElemFilter {
    Equal(Bson),
    Value(Pred),
    Doc(Node),
}

impl ElemFilter {
    pub(crate) fn parse(v: &Bson) -> Result<ElemFilter> {
        match v {
            Bson::Document(d) if is_operator_doc(d) => {
                let value_form =
                    d.keys().next().is_some_and(|k| !matches!(k.as_str(), "$and" | "$or" | "$nor" | "$expr"));
                if value_form {
                    Ok(ElemFilter::Value(parse_operator_doc(d)?))
                } else {
                    Ok(ElemFilter::Doc(parse_node(d)?))
                }
            }
            Bson::Document(d) => Ok(ElemFilter::Doc(parse_node(d)?)),
            Bson::RegularExpression(r) => {
                Ok(ElemFilter::Value(Pred::Regex(Re::new(&r.pattern, &r.options)?)))
            }
            other => Ok(ElemFilter::Equal(other.clone())),
        }
    }

    pub(crate) fn matches(&self, e: &Bson) -> bool {
        match self {
            ElemFilter::Equal(x) => bson_eq(e, x),
            ElemFilter::Value(p) => p.matches_elem(e),
            ElemFilter::Doc(n) => match e {
                Bson::Document(d) => n.matches(d, None),
                _ => false,
            },
        }
    }
}

fn push_conjuncts<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
    match n {
        Node::And(ns) => {
            for c in ns {
                push_conjuncts(c, out);
            }
        }
        other => out.push(other),
    }
}

fn push_pred_conjuncts<'a>(p: &'a Pred, out: &mut Vec<&'a Pred>) {
    match p {
        Pred::And(ps) => {
            for c in ps {
                push_pred_conjuncts(c, out);
            }
        }
        other => out.push(other),
    }
}

fn indexable_value(v: &Bson) -> bool {
    !matches!(
        v,
        Bson::Null
            | Bson::Undefined
            | Bson::Array(_)
            | Bson::RegularExpression(_)
            | Bson::MinKey
            | Bson::MaxKey
    )
}

impl Filter {
    /// Parses a filter document. BadValue (2) on unknown operators and malformed arguments.
    pub fn parse(filter: &Document) -> Result<Filter> {
        Ok(Filter { root: parse_node(filter)?, empty: filter.is_empty(), lets: None })
    }

    /// A filter matching every document.
    pub fn match_all() -> Filter {
        Filter { root: Node::And(Vec::new()), empty: true, lets: None }
    }

    /// Whether `doc` satisfies the filter.
    pub fn matches(&self, doc: &Document) -> bool {
        self.root.matches(doc, self.lets.as_deref())
    }

    /// The filter of a command: every variable its `$expr` reads must be a system variable or one
    /// of `lets` (17276 otherwise, as mongod fails at parse), and `$expr` sees `lets`' values.
    pub fn with_let(mut self, lets: &crate::vars::LetVars) -> Result<Filter> {
        self.root.check_vars(&mut lets.names())?;
        if !lets.is_empty() {
            self.lets = Some(std::sync::Arc::new(lets.eval_ctx()));
        }
        Ok(self)
    }

    /// [`crate::vars::check_expr`] over every `$expr` of the filter.
    pub(crate) fn check_vars(&self, scope: &mut Vec<String>) -> Result<()> {
        self.root.check_vars(scope)
    }

    /// Binds `lets` for `$expr` without checking (inside a pipeline, where enclosing stages may
    /// bind more variables at run time).
    pub(crate) fn bind_let(&mut self, lets: &crate::vars::LetVars) {
        if !lets.is_empty() {
            self.lets = Some(std::sync::Arc::new(lets.eval_ctx()));
        }
    }

    /// Like [`Filter::matches`] but reports errors of `$expr` evaluation (e.g. `$divide` by
    /// zero) instead of treating them as "no match", as MongoDB fails the query.
    pub fn try_matches(&self, doc: &Document) -> Result<bool> {
        self.root.try_matches(doc, self.lets.as_deref())
    }

    /// [`Filter::try_matches`] on a document seen through [`Fields`], so that a caller whose
    /// document is assembled from parts (the node's `$currentOp` entries: a cached template plus
    /// a few live fields) need not build it to test it. `$$ROOT` calls [`Fields::to_document`].
    pub fn try_matches_fields(&self, doc: &dyn Fields) -> Result<bool> {
        self.root.try_matches(doc, self.lets.as_deref())
    }

    /// [`Filter::try_matches`] with the variables of an aggregation context (for `$expr`).
    pub(crate) fn matches_ctx(&self, doc: &dyn Fields, ctx: &EvalCtx) -> Result<bool> {
        self.root.try_matches(doc, Some(ctx))
    }

    /// True for the empty filter `{}`.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// The top-level fields the filter reads (the first component of each path, and those of
    /// `$expr` field paths), in first-use order; `None` when it may read the document as a whole
    /// (`$expr` over `$$ROOT`). A document holding just these fields (with their values) matches
    /// exactly when the whole document does.
    pub fn top_level_fields(&self) -> Option<Vec<String>> {
        let mut deps = crate::aggregate::Deps::default();
        self.root.add_deps(&mut deps);
        deps.into_fields()
    }

    pub(crate) fn add_deps(&self, deps: &mut crate::aggregate::Deps) {
        self.root.add_deps(deps);
    }

    /// The filter as a conjunction: its top-level `$and` (nested ones flattened, implicit ones of
    /// several fields included) split into filters that all hold exactly when it holds, in
    /// evaluation order; a filter that is no conjunction is its only part.
    pub fn split_conjuncts(&self) -> Vec<Filter> {
        fn flatten(n: &Node, lets: &Option<std::sync::Arc<EvalCtx>>, out: &mut Vec<Filter>) {
            match n {
                Node::And(children) if !children.is_empty() => {
                    children.iter().for_each(|c| flatten(c, lets, out));
                }
                other => out.push(Filter { root: other.clone(), empty: false, lets: lets.clone() }),
            }
        }
        let mut out = Vec::new();
        flatten(&self.root, &self.lets, &mut out);
        out
    }

    fn conjuncts(&self) -> Vec<&Node> {
        let mut v = Vec::new();
        push_conjuncts(&self.root, &mut v);
        v
    }

    /// Top-level conjunctive predicates a planner can use, one per path, in filter order.
    ///
    /// Safe for multikey (array) indexes: when several range operators constrain one path,
    /// only the first is kept, because different array elements may satisfy different bounds
    /// (`{a: {$gt: 5, $lt: 3}}` matches `{a: [1, 10]}`). Equality wins over `$in`, which wins
    /// over ranges. See [`Filter::index_predicates_intersected`] for single-valued indexes.
    pub fn index_predicates(&self) -> Vec<(String, IndexPredicate)> {
        self.collect_index_predicates(false)
    }

    /// Like [`Filter::index_predicates`] but intersects ranges on the same path
    /// (`{$gte: 1, $lt: 5}` becomes one closed-open range). Only valid for an index whose
    /// path never holds an array in the collection (not multikey).
    pub fn index_predicates_intersected(&self) -> Vec<(String, IndexPredicate)> {
        self.collect_index_predicates(true)
    }

    fn collect_index_predicates(&self, intersect: bool) -> Vec<(String, IndexPredicate)> {
        let mut out: Vec<(String, IndexPredicate)> = Vec::new();
        for n in self.conjuncts() {
            let Node::Path { path, pred, .. } = n else {
                continue;
            };
            let mut preds = Vec::new();
            push_pred_conjuncts(pred, &mut preds);
            for p in preds {
                let new = match p {
                    Pred::Eq(v) if indexable_value(v) => IndexPredicate::Eq(v.clone()),
                    Pred::In(vals, res) if res.is_empty() && vals.iter().all(indexable_value) => {
                        IndexPredicate::In(vals.clone())
                    }
                    Pred::Cmp(op, v) if indexable_value(v) => match op {
                        CmpOp::Gt | CmpOp::Gte => IndexPredicate::Range {
                            lo: Some(v.clone()),
                            lo_incl: *op == CmpOp::Gte,
                            hi: None,
                            hi_incl: true,
                        },
                        CmpOp::Lt | CmpOp::Lte => IndexPredicate::Range {
                            lo: None,
                            lo_incl: true,
                            hi: Some(v.clone()),
                            hi_incl: *op == CmpOp::Lte,
                        },
                    },
                    _ => continue,
                };
                match out.iter_mut().find(|(p, _)| p == path) {
                    None => out.push((path.clone(), new)),
                    Some((_, old)) => *old = merge_index_preds(old.clone(), new, intersect),
                }
            }
        }
        out
    }

    /// Equality fields of the filter, to seed an upsert's inserted document.
    pub fn equality_seed(&self) -> Document {
        let mut seed = Document::new();
        for n in self.conjuncts() {
            let Node::Path { path, pred, .. } = n else {
                continue;
            };
            if path.split('.').any(|p| p.starts_with('$')) {
                continue;
            }
            let mut preds = Vec::new();
            push_pred_conjuncts(pred, &mut preds);
            for p in preds {
                let value = match p {
                    Pred::Eq(v) => v.clone(),
                    Pred::In(vals, res) if vals.len() == 1 && res.is_empty() => vals[0].clone(),
                    _ => continue,
                };
                // Conflicting paths (e.g. `a` and `a.b`) keep the first one, as MongoDB rejects.
                let _ = set_path(&mut seed, path, value);
            }
        }
        seed
    }

    /// For the positional `$` operator: the index of the first element of the array at
    /// `array_path` (exact path) that satisfies the filter's predicates on that array.
    pub fn positional_match(&self, doc: &Document, array_path: &str) -> Option<usize> {
        let prefix: Vec<&str> = array_path.split('.').collect();
        let Some(Bson::Array(arr)) = get_parts_exact(doc, &prefix) else {
            return None;
        };
        let relevant: Vec<(&[String], &Pred)> = self
            .conjuncts()
            .into_iter()
            .filter_map(|n| match n {
                Node::Path { parts, pred, .. }
                    if parts.len() >= prefix.len() && parts.iter().zip(&prefix).all(|(a, b)| a == b) =>
                {
                    Some((&parts[prefix.len()..], pred))
                }
                _ => None,
            })
            .collect();
        if relevant.is_empty() {
            return None;
        }
        let elem_matches = |e: &Bson, rest: &[String], pred: &Pred| -> bool {
            let rest = match rest.first() {
                Some(first) if as_index(first).is_some() => &rest[1..],
                _ => rest,
            };
            if rest.is_empty() {
                match pred {
                    // `{arr: {$elemMatch: ...}}`: the matching element is the position.
                    Pred::ElemMatchValue(ps) => ps.iter().all(|p| p.matches_elem(e)),
                    Pred::ElemMatchDoc(node) => matches!(e, Bson::Document(d) if node.matches(d, None)),
                    Pred::Size(_) => pred.matches_single(e),
                    _ => pred.matches_elem(e),
                }
            } else {
                match e {
                    Bson::Document(d) => match_path(d, rest, pred),
                    _ => false,
                }
            }
        };
        arr.iter().position(|e| relevant.iter().all(|(rest, pred)| elem_matches(e, rest, pred))).or_else(
            || arr.iter().position(|e| relevant.iter().any(|(rest, pred)| elem_matches(e, rest, pred))),
        )
    }
}

fn merge_index_preds(old: IndexPredicate, new: IndexPredicate, intersect: bool) -> IndexPredicate {
    use IndexPredicate::*;
    match (old, new) {
        (Eq(v), _) | (_, Eq(v)) => Eq(v),
        (In(v), _) | (_, In(v)) => In(v),
        (old @ Range { .. }, Range { .. }) if !intersect => old,
        (
            Range { lo: l1, lo_incl: li1, hi: h1, hi_incl: hi1 },
            Range { lo: l2, lo_incl: li2, hi: h2, hi_incl: hi2 },
        ) => {
            let (lo, lo_incl) = match (l1, l2) {
                (None, l) => (l, li2),
                (l, None) => (l, li1),
                (Some(a), Some(b)) => match cmp_bson(&a, &b) {
                    Ordering::Greater => (Some(a), li1),
                    Ordering::Less => (Some(b), li2),
                    Ordering::Equal => (Some(a), li1 && li2),
                },
            };
            let (hi, hi_incl) = match (h1, h2) {
                (None, h) => (h, hi2),
                (h, None) => (h, hi1),
                (Some(a), Some(b)) => match cmp_bson(&a, &b) {
                    Ordering::Less => (Some(a), hi1),
                    Ordering::Greater => (Some(b), hi2),
                    Ordering::Equal => (Some(a), hi1 && hi2),
                },
            };
            Range { lo, lo_incl, hi, hi_incl }
        }
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
