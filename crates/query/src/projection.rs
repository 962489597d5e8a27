//! Projections: find's `projection` and the aggregation `$project` / `$unset` stages.
//!
//! A projection is either an *inclusion* (only listed fields, plus `_id` unless excluded, plus
//! computed fields) or an *exclusion* (every field but the listed ones); mixing the two fails
//! with 31254 ("Cannot do exclusion on field .. in inclusion projection") or 31253 ("Cannot do
//! inclusion on field .. in exclusion projection"). Dotted paths and nested documents build one
//! tree; paths through arrays apply to each document element. Find projections also support
//! `$slice`, `$elemMatch` and the positional `a.$` (which needs the query, see
//! [`Projection::apply_with_query`]). Included fields keep the document's order; computed fields
//! follow in specification order.

use bson::{Bson, Document};

use crate::compare::{Num, as_num};
use crate::error::{CommandError, Result};
use crate::expr::{EvalCtx, Expr, is_missing};
use crate::filter::{ElemFilter, Filter};

#[derive(Debug, Clone)]
enum Item {
    Include,
    Exclude,
    Sub(Tree),
    Computed(Expr),
    /// `$slice`: (skip, limit) or a count (negative = from the end).
    Slice(Option<i64>, i64),
    ElemMatch(ElemFilter),
    /// `a.$`: the first array element matched by the query.
    Positional,
}

#[derive(Debug, Clone, Default)]
struct Tree {
    fields: Vec<(String, Item)>,
}

impl Tree {
    fn get(&self, k: &str) -> Option<&Item> {
        self.fields.iter().find(|(n, _)| n == k).map(|(_, i)| i)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Inclusion,
    Exclusion,
}

/// Which grammar a projection follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectionKind {
    /// find's `projection`: `$slice`, `$elemMatch`, positional `$` allowed.
    Find,
    /// The `$project` stage: operator objects are expressions.
    Aggregate,
}

/// A parsed projection.
#[derive(Debug, Clone)]
pub struct Projection {
    mode: Mode,
    tree: Tree,
    /// Whether `_id` is kept (inclusion: by default; exclusion: unless excluded).
    include_id: bool,
    has_positional: bool,
    /// An inclusion of paths only (nothing computed, sliced, matched or positional): applied to a
    /// document given up, it moves the included values.
    plain: bool,
    /// A find command's `let` variables, for computed fields ([`Projection::checked_let`]).
    lets: crate::vars::LetVars,
}

fn is_operator_doc(d: &Document) -> bool {
    d.keys().next().is_some_and(|k| k.starts_with('$'))
}

fn flag(v: &Bson) -> Option<bool> {
    match v {
        Bson::Boolean(b) => Some(*b),
        other => match as_num(other)? {
            Num::Int(i) => Some(i != 0),
            Num::Float(f) => Some(f != 0.0),
        },
    }
}

struct Builder {
    kind: ProjectionKind,
    mode: Option<Mode>,
    include_id: Option<bool>,
    has_positional: bool,
}

impl Builder {
    fn note(&mut self, path: &str, m: Mode) -> Result<()> {
        match (self.mode, m) {
            (None, _) => self.mode = Some(m),
            (Some(Mode::Inclusion), Mode::Exclusion) => {
                return Err(CommandError::location(
                    31254,
                    format!("Cannot do exclusion on field {path} in inclusion projection"),
                ));
            }
            (Some(Mode::Exclusion), Mode::Inclusion) => {
                return Err(CommandError::location(
                    31253,
                    format!("Cannot do inclusion on field {path} in exclusion projection"),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn item(&mut self, path: &str, v: &Bson) -> Result<Item> {
        if let Some(f) = flag(v) {
            if path == "_id" {
                self.include_id = Some(f);
                return Ok(if f { Item::Include } else { Item::Exclude });
            }
            self.note(path, if f { Mode::Inclusion } else { Mode::Exclusion })?;
            return Ok(if f { Item::Include } else { Item::Exclude });
        }
        match v {
            Bson::Document(d) if is_operator_doc(d) => {
                let op = d.keys().next().map(String::as_str).unwrap_or_default();
                if self.kind == ProjectionKind::Find {
                    match op {
                        "$slice" => return self.slice(path, d),
                        "$elemMatch" => {
                            let Some(Bson::Document(sub)) = d.get("$elemMatch") else {
                                return Err(CommandError::bad_value(
                                    "elemMatch: Invalid argument, object required.",
                                ));
                            };
                            if path.contains('.') {
                                return Err(CommandError::location(
                                    31275,
                                    "Cannot use $elemMatch projection on a nested field.",
                                ));
                            }
                            self.note(path, Mode::Inclusion)?;
                            return Ok(Item::ElemMatch(ElemFilter::parse(&Bson::Document(sub.clone()))?));
                        }
                        "$meta" => {
                            return Err(CommandError::bad_value(
                                "$meta projections are not supported by this server",
                            ));
                        }
                        _ => {}
                    }
                }
                if path == "_id" {
                    self.include_id = Some(true);
                } else {
                    self.note(path, Mode::Inclusion)?;
                }
                Ok(Item::Computed(Expr::parse(v)?))
            }
            Bson::Document(d) => {
                if d.is_empty() {
                    return Err(CommandError::location(
                        51270,
                        format!(
                            "An empty sub-projection is not a valid value. Found empty object at path {path}"
                        ),
                    ));
                }
                let mut t = Tree::default();
                for (k, sv) in d {
                    let full = format!("{path}.{k}");
                    self.add(&mut t, &full, k, sv)?;
                }
                Ok(Item::Sub(t))
            }
            other => {
                if path == "_id" {
                    self.include_id = Some(true);
                } else {
                    self.note(path, Mode::Inclusion)?;
                }
                Ok(Item::Computed(Expr::parse(other)?))
            }
        }
    }

    fn slice(&mut self, _path: &str, d: &Document) -> Result<Item> {
        let arg = d.get("$slice").cloned().unwrap_or(Bson::Null);
        let int = |v: &Bson| -> Option<i64> {
            match as_num(v)? {
                Num::Int(i) => Some(i),
                Num::Float(f) if f.is_finite() => Some(f as i64),
                Num::Float(_) => None,
            }
        };
        match &arg {
            Bson::Array(a) if a.len() == 2 => {
                let (Some(skip), Some(limit)) = (int(&a[0]), int(&a[1])) else {
                    return Err(CommandError::bad_value(
                        "$slice only supports numbers and [skip, limit] arrays",
                    ));
                };
                if limit <= 0 {
                    return Err(CommandError::bad_value("$slice limit must be positive"));
                }
                Ok(Item::Slice(Some(skip), limit))
            }
            other => match int(other) {
                Some(n) => Ok(Item::Slice(None, n)),
                None => Err(CommandError::bad_value("$slice only supports numbers and [skip, limit] arrays")),
            },
        }
    }

    /// Adds `rel` (a possibly dotted path relative to `t`) with value `v`.
    fn add(&mut self, t: &mut Tree, full: &str, rel: &str, v: &Bson) -> Result<()> {
        if rel.is_empty() || rel.split('.').any(str::is_empty) {
            return Err(CommandError::location(31249, format!("Invalid projection path '{full}'")));
        }
        if rel.starts_with('$') {
            return Err(CommandError::location(
                16410,
                format!("FieldPath field names may not start with '$'. (in '{full}')"),
            ));
        }
        if let Some(prefix) = rel.strip_suffix(".$") {
            if self.kind != ProjectionKind::Find {
                return Err(CommandError::location(
                    31324,
                    "Cannot use positional projection in aggregation projection",
                ));
            }
            if !flag(v).unwrap_or(false) {
                return Err(CommandError::location(
                    31395,
                    "positional projection cannot be used with exclusion",
                ));
            }
            self.note(full, Mode::Inclusion)?;
            self.has_positional = true;
            return insert_item(t, full, prefix, Item::Positional);
        }
        let item = self.item(full, v)?;
        insert_item(t, full, rel, item)
    }
}

fn insert_item(t: &mut Tree, full: &str, rel: &str, item: Item) -> Result<()> {
    match rel.split_once('.') {
        None => {
            if let Some(pos) = t.fields.iter().position(|(k, _)| k == rel) {
                // Merging two sub-projections of the same parent is fine; anything else collides.
                if let (Item::Sub(existing), Item::Sub(new)) = (&mut t.fields[pos].1, &item) {
                    for (k, i) in new.fields.clone() {
                        insert_item(existing, full, &k, i)?;
                    }
                    return Ok(());
                }
                return Err(CommandError::location(31250, format!("Path collision at {full}")));
            }
            t.fields.push((rel.to_string(), item));
            Ok(())
        }
        Some((head, rest)) => {
            let pos = match t.fields.iter().position(|(k, _)| k == head) {
                Some(p) => p,
                None => {
                    t.fields.push((head.to_string(), Item::Sub(Tree::default())));
                    t.fields.len() - 1
                }
            };
            match &mut t.fields[pos].1 {
                Item::Sub(sub) => insert_item(sub, full, rest, item),
                _ => Err(CommandError::location(
                    31249,
                    format!("Path collision at {full} remaining portion {rest}"),
                )),
            }
        }
    }
}

fn tree_mode_check(t: &Tree, mode: Mode) -> Result<()> {
    for (k, item) in &t.fields {
        match item {
            Item::Computed(_) if mode == Mode::Exclusion => {
                return Err(CommandError::location(
                    31252,
                    format!("Cannot use expression other than $meta in exclusion projection (field {k})"),
                ));
            }
            Item::Sub(s) => tree_mode_check(s, mode)?,
            _ => {}
        }
    }
    Ok(())
}

impl Projection {
    /// Parses a find projection.
    pub fn parse(spec: &Document) -> Result<Self> {
        Self::parse_kind(spec, ProjectionKind::Find)
    }

    /// Parses a projection of the given grammar.
    pub fn parse_kind(spec: &Document, kind: ProjectionKind) -> Result<Self> {
        let mut b = Builder { kind, mode: None, include_id: None, has_positional: false };
        let mut tree = Tree::default();
        for (k, v) in spec {
            b.add(&mut tree, k, k, v)?;
        }
        let mode = match b.mode {
            Some(m) => m,
            // Only `_id` (or nothing, or only $slice): `{_id: 1}` is an inclusion, `{_id: 0}`
            // an exclusion.
            None => {
                let id_only_include = matches!(tree.get("_id"), Some(Item::Include | Item::Computed(_)));
                if id_only_include { Mode::Inclusion } else { Mode::Exclusion }
            }
        };
        tree_mode_check(&tree, mode)?;
        Ok(Projection {
            mode,
            include_id: b.include_id.unwrap_or(true),
            plain: mode == Mode::Inclusion && !b.has_positional && paths_only(&tree),
            tree,
            has_positional: b.has_positional,
            lets: crate::vars::LetVars::none(),
        })
    }

    /// A `$unset` stage: an exclusion of the given paths.
    pub fn unset(paths: &[String]) -> Result<Self> {
        if paths.is_empty() {
            return Err(CommandError::location(
                31119,
                "$unset specification must be a string or an array with at least one field",
            ));
        }
        let mut spec = Document::new();
        for p in paths {
            spec.insert(p.clone(), 0);
        }
        Self::parse_kind(&spec, ProjectionKind::Aggregate)
    }

    /// [`crate::vars::check_expr`] over the projection's computed fields.
    pub(crate) fn check_vars(&self, scope: &mut Vec<String>) -> Result<()> {
        fn walk(t: &Tree, scope: &mut Vec<String>) -> Result<()> {
            for (_, item) in &t.fields {
                match item {
                    Item::Computed(e) => crate::vars::check_expr(e, scope)?,
                    Item::Sub(sub) => walk(sub, scope)?,
                    _ => {}
                }
            }
            Ok(())
        }
        walk(&self.tree, scope)
    }

    /// True when this projection uses the positional `a.$` form.
    pub fn has_positional(&self) -> bool {
        self.has_positional
    }

    /// True for an inclusion projection.
    pub fn is_inclusion(&self) -> bool {
        self.mode == Mode::Inclusion
    }

    /// Applies the projection. Positional `a.$` without the query keeps the whole array;
    /// use [`Projection::apply_with_query`] for it.
    pub fn apply(&self, doc: &Document) -> Result<Document> {
        self.apply_with_query(doc, None)
    }

    /// The projection of a command with `let` variables: its computed fields see them, after a
    /// check that every variable they read is defined (17276 otherwise).
    pub fn checked_let(mut self, lets: &crate::vars::LetVars) -> Result<Self> {
        self.check_vars(&mut lets.names())?;
        self.lets = lets.clone();
        Ok(self)
    }

    /// Applies the projection; `query` resolves positional `a.$` projections.
    pub fn apply_with_query(&self, doc: &Document, query: Option<&Filter>) -> Result<Document> {
        let mut ctx = self.lets.eval_ctx();
        self.apply_ctx(doc, query, &mut ctx)
    }

    /// [`Projection::apply_ctx`] on a document the caller gives up: an exclusion removes fields
    /// in place instead of copying the rest (same result).
    pub(crate) fn apply_owned_ctx(&self, mut doc: Document, ctx: &mut EvalCtx) -> Result<Document> {
        match self.mode {
            Mode::Exclusion => {
                if !self.include_id {
                    doc.remove("_id");
                }
                exclude(&mut doc, &self.tree);
                Ok(doc)
            }
            Mode::Inclusion if self.plain => {
                // Nothing is computed: the included values are moved, not copied.
                let mut out = Document::new();
                if self.include_id
                    && !matches!(self.tree.get("_id"), Some(Item::Sub(_)))
                    && let Some(id) = doc.remove("_id")
                {
                    out.insert("_id", id);
                }
                include_plain_owned(doc, &self.tree, &mut out);
                Ok(out)
            }
            Mode::Inclusion => self.apply_ctx(&doc, None, ctx),
        }
    }

    pub(crate) fn apply_ctx(
        &self,
        doc: &Document,
        query: Option<&Filter>,
        ctx: &mut EvalCtx,
    ) -> Result<Document> {
        match self.mode {
            Mode::Exclusion => {
                let mut out = doc.clone();
                if !self.include_id {
                    out.remove("_id");
                }
                exclude(&mut out, &self.tree);
                Ok(out)
            }
            Mode::Inclusion => {
                let mut out = Document::new();
                if self.include_id
                    && !matches!(self.tree.get("_id"), Some(Item::Computed(_) | Item::Sub(_)))
                    && let Some(id) = doc.get("_id")
                {
                    out.insert("_id", id.clone());
                }
                let env = Env { root: doc, query, ctx };
                include(doc, &self.tree, "", &mut out, env, true)?;
                Ok(out)
            }
        }
    }
}

struct Env<'a> {
    root: &'a Document,
    query: Option<&'a Filter>,
    ctx: &'a mut EvalCtx,
}

fn slice_array(arr: &[Bson], skip: Option<i64>, limit: i64) -> Vec<Bson> {
    let len = arr.len() as i64;
    let (start, n) = match skip {
        None if limit >= 0 => (0, limit),
        None => ((len + limit).max(0), -limit),
        Some(s) => (if s < 0 { (len + s).max(0) } else { s.min(len) }, limit),
    };
    let start = start.min(len) as usize;
    let end = (start as i64).saturating_add(n).min(len) as usize;
    arr[start..end].to_vec()
}

fn exclude(doc: &mut Document, t: &Tree) {
    for (k, item) in &t.fields {
        match item {
            Item::Exclude => {
                doc.remove(k);
            }
            Item::Sub(sub) => match doc.get_mut(k) {
                Some(Bson::Document(d)) => exclude(d, sub),
                Some(Bson::Array(a)) => exclude_array(a, sub),
                _ => {}
            },
            Item::Slice(skip, limit) => {
                if let Some(Bson::Array(a)) = doc.get_mut(k) {
                    *a = slice_array(a, *skip, *limit);
                }
            }
            _ => {}
        }
    }
}

fn exclude_array(a: &mut [Bson], sub: &Tree) {
    for e in a.iter_mut() {
        match e {
            Bson::Document(d) => exclude(d, sub),
            Bson::Array(inner) => exclude_array(inner, sub),
            _ => {}
        }
    }
}

/// Copies the included fields of `src` into `out`, then adds computed fields.
fn include(
    src: &Document,
    t: &Tree,
    prefix: &str,
    out: &mut Document,
    mut env: Env<'_>,
    top: bool,
) -> Result<()> {
    for (k, v) in src {
        let Some(item) = t.get(k) else {
            continue;
        };
        if top && k == "_id" && out.contains_key("_id") {
            continue;
        }
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match item {
            Item::Include => {
                out.insert(k.clone(), v.clone());
            }
            Item::Exclude | Item::Computed(_) => {}
            Item::Sub(sub) => match v {
                Bson::Document(d) => {
                    let mut child = Document::new();
                    include(
                        d,
                        sub,
                        &path,
                        &mut child,
                        Env { root: env.root, query: env.query, ctx: &mut *env.ctx },
                        false,
                    )?;
                    out.insert(k.clone(), child);
                }
                Bson::Array(a) => {
                    let arr = include_array(a, sub, &path, &mut env)?;
                    out.insert(k.clone(), arr);
                }
                _ => {}
            },
            Item::Slice(skip, limit) => {
                out.insert(
                    k.clone(),
                    match v {
                        Bson::Array(a) => Bson::Array(slice_array(a, *skip, *limit)),
                        other => other.clone(),
                    },
                );
            }
            Item::ElemMatch(f) => {
                if let Bson::Array(a) = v
                    && let Some(e) = a.iter().find(|e| f.matches(e))
                {
                    out.insert(k.clone(), Bson::Array(vec![e.clone()]));
                }
            }
            Item::Positional => match v {
                Bson::Array(a) => match env.query {
                    Some(q) => {
                        if let Some(e) = q.positional_match(env.root, &path).and_then(|i| a.get(i)) {
                            out.insert(k.clone(), Bson::Array(vec![e.clone()]));
                        } else {
                            return Err(CommandError::bad_value(
                                "Executor error during find command :: caused by :: positional operator '.$' requires corresponding field in query specifier",
                            ));
                        }
                    }
                    None => {
                        out.insert(k.clone(), v.clone());
                    }
                },
                other => {
                    out.insert(k.clone(), other.clone());
                }
            },
        }
    }
    // Computed fields, and sub-trees holding computed fields that the document lacks.
    for (k, item) in &t.fields {
        match item {
            Item::Computed(e) => {
                let val = e.eval(env.root, env.ctx)?;
                if !is_missing(&val) {
                    out.insert(k.clone(), val);
                }
            }
            Item::Sub(sub) if !src.contains_key(k) && has_computed(sub) => {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                let mut child = Document::new();
                include(
                    &Document::new(),
                    sub,
                    &path,
                    &mut child,
                    Env { root: env.root, query: env.query, ctx: &mut *env.ctx },
                    false,
                )?;
                out.insert(k.clone(), child);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether the tree names paths only: nothing computed, sliced, matched or positional.
fn paths_only(t: &Tree) -> bool {
    t.fields.iter().all(|(_, item)| match item {
        Item::Include | Item::Exclude => true,
        Item::Sub(sub) => paths_only(sub),
        Item::Computed(_) | Item::Slice(..) | Item::ElemMatch(_) | Item::Positional => false,
    })
}

fn has_computed(t: &Tree) -> bool {
    t.fields.iter().any(|(_, i)| match i {
        Item::Computed(_) => true,
        Item::Sub(s) => has_computed(s),
        _ => false,
    })
}

/// [`include`] for a plain inclusion tree (only `Include`, `Exclude` of `_id`, and `Sub`) over a
/// document given up: the same result, values moved.
fn include_plain_owned(src: Document, t: &Tree, out: &mut Document) {
    for (k, v) in src {
        match t.get(&k) {
            Some(Item::Include) => {
                out.insert(k, v);
            }
            Some(Item::Sub(sub)) => match v {
                Bson::Document(d) => {
                    let mut child = Document::new();
                    include_plain_owned(d, sub, &mut child);
                    out.insert(k, child);
                }
                Bson::Array(a) => {
                    out.insert(k, include_plain_array_owned(a, sub));
                }
                _ => {}
            },
            _ => {}
        }
    }
}

/// [`include_array`] for [`include_plain_owned`].
fn include_plain_array_owned(a: Vec<Bson>, sub: &Tree) -> Bson {
    let mut out = Vec::new();
    for e in a {
        match e {
            Bson::Document(d) => {
                let mut child = Document::new();
                include_plain_owned(d, sub, &mut child);
                out.push(Bson::Document(child));
            }
            Bson::Array(inner) => out.push(include_plain_array_owned(inner, sub)),
            _ => {}
        }
    }
    Bson::Array(out)
}

fn include_array(a: &[Bson], sub: &Tree, path: &str, env: &mut Env<'_>) -> Result<Bson> {
    let mut out = Vec::new();
    for e in a {
        match e {
            Bson::Document(d) => {
                let mut child = Document::new();
                include(
                    d,
                    sub,
                    path,
                    &mut child,
                    Env { root: env.root, query: env.query, ctx: &mut *env.ctx },
                    false,
                )?;
                out.push(Bson::Document(child));
            }
            Bson::Array(inner) => out.push(include_array(inner, sub, path, env)?),
            _ => {}
        }
    }
    Ok(Bson::Array(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::doc;

    /// The projection of `d` by `spec`; applied to a document given up, the same.
    fn p(spec: Document, d: Document) -> Document {
        let proj = Projection::parse(&spec).unwrap();
        let out = proj.apply(&d).unwrap();
        let owned = proj.apply_owned_ctx(d, &mut crate::expr::EvalCtx::new()).unwrap();
        assert_eq!(bson::to_vec(&owned).unwrap(), bson::to_vec(&out).unwrap(), "{spec}: {owned} != {out}");
        out
    }

    #[test]
    fn inclusion_and_exclusion() {
        let d = doc! {"_id": 1, "a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]};
        let table: Vec<(Document, Document)> = vec![
            (doc! {"a": 1}, doc! {"_id": 1, "a": 1}),
            (doc! {"a": 1, "_id": 0}, doc! {"a": 1}),
            (doc! {"b.c": 1}, doc! {"_id": 1, "b": {"c": 2}}),
            (doc! {"b": {"d": true}}, doc! {"_id": 1, "b": {"d": 3}}),
            (doc! {"a": 0}, doc! {"_id": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}),
            (doc! {"b.c": 0, "_id": 0}, doc! {"a": 1, "b": {"d": 3}, "e": [1, 2]}),
            (doc! {"_id": 0}, doc! {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}),
            (doc! {"_id": 1}, doc! {"_id": 1}),
            (doc! {}, d.clone()),
            (doc! {"e": 1, "a": 1}, doc! {"_id": 1, "a": 1, "e": [1, 2]}),
            (doc! {"zz": 1}, doc! {"_id": 1}),
        ];
        for (spec, want) in table {
            assert_eq!(p(spec.clone(), d.clone()), want, "{spec}");
        }
    }

    #[test]
    fn mixing_modes_fails_with_mongodb_codes() {
        let e = Projection::parse(&doc! {"a": 1, "b": 0}).unwrap_err();
        assert_eq!(e.code, 31254);
        let e = Projection::parse(&doc! {"a": 0, "b": 1}).unwrap_err();
        assert_eq!(e.code, 31253);
        assert!(Projection::parse(&doc! {"a": 1, "_id": 0}).is_ok());
        assert!(Projection::parse(&doc! {"a": 0, "_id": 1}).is_ok());
        assert_eq!(Projection::parse(&doc! {"a": 1, "a.b": 1}).unwrap_err().code, 31249);
    }

    #[test]
    fn paths_through_arrays() {
        let d = doc! {"_id": 1, "a": [{"b": 1, "c": 2}, {"b": 3}, 7, [{"b": 4, "x": 0}]]};
        assert_eq!(p(doc! {"a.b": 1, "_id": 0}, d.clone()), doc! {"a": [{"b": 1}, {"b": 3}, [{"b": 4}]]});
        assert_eq!(p(doc! {"a.b": 0}, d.clone()), doc! {"_id": 1, "a": [{"c": 2}, {}, 7, [{"x": 0}]]});
    }

    #[test]
    fn slice_and_elem_match() {
        let d = doc! {"_id": 1, "a": [1, 2, 3, 4, 5], "b": "x", "c": [{"k": 1}, {"k": 2}, {"k": 2, "z": 1}]};
        assert_eq!(
            p(doc! {"a": {"$slice": 2}}, d.clone()).get("a"),
            Some(&Bson::Array(vec![1.into(), 2.into()]))
        );
        assert_eq!(
            p(doc! {"a": {"$slice": -2}}, d.clone()).get("a"),
            Some(&Bson::Array(vec![4.into(), 5.into()]))
        );
        assert_eq!(
            p(doc! {"a": {"$slice": [1, 2]}}, d.clone()).get("a"),
            Some(&Bson::Array(vec![2.into(), 3.into()]))
        );
        // $slice alone keeps other fields.
        assert!(p(doc! {"a": {"$slice": 1}}, d.clone()).contains_key("b"));
        // $slice with inclusion keeps only the listed fields.
        let out = p(doc! {"a": {"$slice": 1}, "b": 1}, d.clone());
        assert_eq!(out, doc! {"_id": 1, "a": [1], "b": "x"});
        let out = p(doc! {"c": {"$elemMatch": {"k": 2}}}, d.clone());
        assert_eq!(out, doc! {"_id": 1, "c": [{"k": 2}]});
        let out = p(doc! {"c": {"$elemMatch": {"k": 9}}}, d);
        assert_eq!(out, doc! {"_id": 1});
    }

    #[test]
    fn positional_with_query() {
        let d = doc! {"_id": 1, "grades": [80, 95, 90], "x": 1};
        let q = Filter::parse(&doc! {"grades": {"$gte": 90}}).unwrap();
        let proj = Projection::parse(&doc! {"grades.$": 1}).unwrap();
        assert!(proj.has_positional());
        assert_eq!(proj.apply_with_query(&d, Some(&q)).unwrap(), doc! {"_id": 1, "grades": [95]});
        let d = doc! {"_id": 1, "s": [{"n": "a", "v": 1}, {"n": "b", "v": 2}]};
        let q = Filter::parse(&doc! {"s.n": "b"}).unwrap();
        let proj = Projection::parse(&doc! {"s.$": 1}).unwrap();
        assert_eq!(proj.apply_with_query(&d, Some(&q)).unwrap(), doc! {"_id": 1, "s": [{"n": "b", "v": 2}]});
    }

    #[test]
    fn computed_fields() {
        let d = doc! {"_id": 1, "a": 2, "b": 3};
        let out = Projection::parse_kind(
            &doc! {"s": {"$add": ["$a", "$b"]}, "a": 1, "lit": {"$literal": 1}},
            ProjectionKind::Aggregate,
        )
        .unwrap()
        .apply(&d)
        .unwrap();
        assert_eq!(out, doc! {"_id": 1, "a": 2, "s": 5, "lit": 1});
        let out = Projection::parse_kind(&doc! {"x.y": "$a", "_id": 0}, ProjectionKind::Aggregate)
            .unwrap()
            .apply(&d)
            .unwrap();
        assert_eq!(out, doc! {"x": {"y": 2}});
        let out = Projection::parse_kind(&doc! {"_id": "$b"}, ProjectionKind::Aggregate)
            .unwrap()
            .apply(&d)
            .unwrap();
        assert_eq!(out, doc! {"_id": 3});
        let out = Projection::parse_kind(&doc! {"gone": "$$REMOVE", "a": 1}, ProjectionKind::Aggregate)
            .unwrap()
            .apply(&d)
            .unwrap();
        assert_eq!(out, doc! {"_id": 1, "a": 2});
        assert_eq!(
            Projection::parse_kind(&doc! {"a": 0, "s": "$b"}, ProjectionKind::Aggregate).unwrap_err().code,
            31253
        );
    }

    #[test]
    fn unset_builds_exclusion() {
        let proj = Projection::unset(&["a".into(), "b.c".into()]).unwrap();
        assert_eq!(
            proj.apply(&doc! {"_id": 1, "a": 1, "b": {"c": 1, "d": 2}}).unwrap(),
            doc! {"_id": 1, "b": {"d": 2}}
        );
        assert!(Projection::unset(&[]).is_err());
    }
}
