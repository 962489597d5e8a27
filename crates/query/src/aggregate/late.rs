//! Late materialization: stages run on partial documents read in place from a [`DocSource`].

use bson::{Bson, Document};

use super::fields::apply_add;
use super::{AddSpec, Deps, DocSource, PipelineEnv, Stage, Ticker, count_docs, run_stages, top_k};
use crate::error::Result;
use crate::expr::{EvalCtx, is_missing};
use crate::path::Fields;

/// A document of a late-materialized run.
#[derive(Debug, Clone)]
pub(super) enum Row {
    /// The source's document `src`, read in place, with `own`: the live fields the stages read
    /// and the fields they added, each by its position in the run's [`Run::names`], in the order
    /// a document would hold them. (A few fields in a vector, not a `Document`: no key copied,
    /// hashed or rehashed per row.)
    Partial { src: usize, own: Vec<(usize, Bson)> },
    /// A document of its own (a count, a facet's result).
    Whole(Document),
}

fn own_value(own: &[(usize, Bson)], name: usize) -> Option<&Bson> {
    own.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// Sets (in place, or appended) or, for a missing value, removes field `name` of `own`: what
/// `Document::insert` / `remove` do to a document's order.
fn set_own(own: &mut Vec<(usize, Bson)>, name: usize, v: Bson) {
    let at = own.iter().position(|(n, _)| *n == name);
    match (at, is_missing(&v)) {
        (Some(i), true) => {
            own.remove(i);
        }
        (Some(i), false) => own[i].1 = v,
        (None, true) => {}
        (None, false) => own.push((name, v)),
    }
}

/// A row seen as a document.
struct View<'a> {
    row: &'a Row,
    run: &'a Run<'a>,
}

impl Fields for View<'_> {
    fn field(&self, key: &str) -> Option<&Bson> {
        self.run.get(self.row, key)
    }
    fn to_document(&self) -> Document {
        self.run.materialize_one(self.row.clone())
    }
}

/// What a late-materialized run reads rows from.
pub(super) struct Run<'a> {
    pub(super) src: &'a dyn DocSource,
    /// The fields partial rows may hold: the source's fields the stages read (the first
    /// `read` of them), then the fields the stages add (none of them is the source's).
    pub(super) names: &'a [String],
    pub(super) read: usize,
}

/// Whether a stage can run on partial documents: it only selects, orders, counts or adds fields.
/// (A `$facet` can: each of its pipelines runs on partial documents as far as it can.)
pub(super) fn runs_on_partial(stage: &Stage) -> bool {
    matches!(
        stage,
        Stage::Match(_)
            | Stage::AddFields(_)
            | Stage::Sort(_)
            | Stage::Skip(_)
            | Stage::Limit(_)
            | Stage::Count(_)
            | Stage::Facet(_)
    )
}

fn add_spec_deps(spec: &[(String, AddSpec)], deps: &mut Deps) {
    for (_, s) in spec {
        match s {
            AddSpec::Value(e) => e.add_deps(deps),
            AddSpec::Nested(sub) => add_spec_deps(sub, deps),
        }
    }
}

/// What the stages that run on partial documents read (`deps`) and write at the top level
/// (`written`), through every `$facet` pipeline.
pub(super) fn partial_region(stages: &[Stage], deps: &mut Deps, written: &mut Vec<String>) {
    for stage in stages.iter().take_while(|s| runs_on_partial(s)) {
        match stage {
            Stage::Match(f) => f.add_deps(deps),
            Stage::AddFields(spec) => {
                add_spec_deps(spec, deps);
                for (k, _) in spec {
                    if !written.contains(k) {
                        written.push(k.clone());
                    }
                }
            }
            Stage::Sort(s) => s.add_deps(deps),
            Stage::Facet(facets) => {
                for (_, p) in facets {
                    partial_region(&p.stages, deps, written);
                }
            }
            _ => {}
        }
    }
}

/// A field a stage of the partial region wrote that `partial_region` did not list (a bug, not
/// an input error: the region's analysis and its stages disagree).
fn unlisted(name: &str) -> crate::error::CommandError {
    crate::error::CommandError::new(
        1,
        "InternalError",
        format!("a late-materialized stage wrote {name}, not listed"),
    )
}

impl<'s> Run<'s> {
    fn view<'b>(&'b self, row: &'b Row) -> View<'b> {
        View { row, run: self }
    }

    fn name(&self, key: &str) -> Option<usize> {
        self.names.iter().position(|n| n == key)
    }

    /// Top-level field `key` of `row`: added or live (its own), else the fixed document's.
    fn get<'x>(&'x self, row: &'x Row, key: &str) -> Option<&'x Bson> {
        let (src, own) = match row {
            Row::Whole(d) => return d.get(key),
            Row::Partial { src, own } => (*src, own),
        };
        if let Some(v) = self.name(key).and_then(|n| own_value(own, n)) {
            return Some(v);
        }
        if self.src.is_live(key) {
            return None;
        }
        self.src.fixed(src)?.get(key)
    }

    /// A partial row's own fields as a document (for what writes into one).
    fn own_doc(&self, own: &[(usize, Bson)]) -> Document {
        own.iter().map(|(n, v)| (self.names[*n].clone(), v.clone())).collect()
    }

    /// Row `r` whole: the source's document with the fields the stages added (no stage that runs
    /// on partial documents changes a field the source has, so these are all the differences),
    /// appended in the order they were added, as running the stages on the whole documents would
    /// have appended them.
    fn materialize_one(&self, r: Row) -> Document {
        match r {
            Row::Whole(d) => d,
            Row::Partial { src, own } => {
                let mut whole = self.src.whole(src);
                for (n, v) in own {
                    if n >= self.read {
                        whole.insert(self.names[n].clone(), v);
                    }
                }
                whole
            }
        }
    }

    fn materialize(&self, rows: Vec<Row>) -> Vec<Document> {
        rows.into_iter().map(|r| self.materialize_one(r)).collect()
    }

    /// `$addFields` on rows: evaluated on each row's view, written into its own fields (a whole
    /// row's document).
    fn add_fields(
        &self,
        spec: &[(String, AddSpec)],
        rows: &mut [Row],
        env: &dyn PipelineEnv,
        ctx: &mut EvalCtx,
    ) -> Result<()> {
        let mut t = Ticker { env, n: 0 };
        let top_level = spec.iter().all(|(_, s)| matches!(s, AddSpec::Value(_)));
        // Each added field's position among the names (every one is there: `partial_region`
        // listed what the stages write).
        let slots: Vec<Option<usize>> = spec.iter().map(|(k, _)| self.name(k)).collect();
        let mut values = Vec::with_capacity(spec.len());
        for r in rows.iter_mut() {
            t.tick()?;
            if top_level {
                values.clear();
                let view = self.view(r);
                for (_, s) in spec {
                    if let AddSpec::Value(e) = s {
                        values.push(e.eval(&view, ctx)?);
                    }
                }
                for (((k, _), slot), v) in spec.iter().zip(&slots).zip(values.drain(..)) {
                    match (&mut *r, slot) {
                        (Row::Partial { own, .. }, Some(n)) => set_own(own, *n, v),
                        (Row::Partial { .. }, None) => return Err(unlisted(k)),
                        (Row::Whole(d), _) if is_missing(&v) => {
                            d.remove(k);
                        }
                        (Row::Whole(d), _) => {
                            d.insert(k.clone(), v);
                        }
                    }
                }
            } else {
                // Nested specifications read the row as it was while writing into it.
                let before = r.clone();
                let view = self.view(&before);
                match r {
                    Row::Partial { own, .. } => {
                        let mut doc = self.own_doc(own);
                        apply_add(&mut doc, spec, &view, ctx)?;
                        *own = doc
                            .into_iter()
                            .map(|(k, v)| self.name(&k).map(|n| (n, v)).ok_or_else(|| unlisted(&k)))
                            .collect::<Result<_>>()?;
                    }
                    Row::Whole(d) => apply_add(d, spec, &view, ctx)?,
                }
            }
        }
        Ok(())
    }

    /// Runs `stages` on rows, partial ones staying partial as long as the stages allow, then whole.
    pub(super) fn rows(
        &self,
        stages: &[Stage],
        mut rows: Vec<Row>,
        env: &dyn PipelineEnv,
        ctx: &mut EvalCtx,
    ) -> Result<Vec<Document>> {
        for (i, stage) in stages.iter().enumerate() {
            env.check()?;
            let mut t = Ticker { env, n: 0 };
            match stage {
                Stage::Match(f) => {
                    let mut kept = Vec::with_capacity(rows.len());
                    for r in rows {
                        t.tick()?;
                        if f.matches_ctx(&self.view(&r), ctx)? {
                            kept.push(r);
                        }
                    }
                    rows = kept;
                }
                Stage::AddFields(spec) => self.add_fields(spec, &mut rows, env, ctx)?,
                Stage::Sort(s) => {
                    let order = s.top_order_by_fields(&rows, top_k(&stages[i + 1..]), |r, k| self.get(r, k));
                    crate::sort::permute(&mut rows, order);
                }
                Stage::Skip(n) => {
                    let n = usize::try_from(*n).unwrap_or(usize::MAX).min(rows.len());
                    rows.drain(..n);
                }
                Stage::Limit(n) => rows.truncate(usize::try_from(*n).unwrap_or(usize::MAX)),
                Stage::Count(name) => {
                    rows = count_docs(rows.len(), name).into_iter().map(Row::Whole).collect();
                }
                Stage::Facet(facets) => {
                    let mut result = Document::new();
                    let mut input = Some(rows);
                    for (j, (name, p)) in facets.iter().enumerate() {
                        let r = if j + 1 == facets.len() {
                            self.rows(&p.stages, input.take().unwrap_or_default(), env, ctx)?
                        } else {
                            self.rows_borrowed(&p.stages, input.as_deref().unwrap_or_default(), env, ctx)?
                        };
                        result.insert(name.clone(), Bson::Array(r.into_iter().map(Bson::Document).collect()));
                    }
                    rows = vec![Row::Whole(result)];
                }
                _ => {
                    let docs = self.materialize(rows);
                    return run_stages(&stages[i..], docs, env, ctx);
                }
            }
        }
        Ok(self.materialize(rows))
    }

    /// [`Run::rows`] over rows it may not take: selecting stages work on references first.
    fn rows_borrowed(
        &self,
        stages: &[Stage],
        rows: &[Row],
        env: &dyn PipelineEnv,
        ctx: &mut EvalCtx,
    ) -> Result<Vec<Document>> {
        let mut refs: Vec<&Row> = rows.iter().collect();
        for (i, stage) in stages.iter().enumerate() {
            env.check()?;
            match stage {
                Stage::Match(f) => {
                    let mut t = Ticker { env, n: 0 };
                    let mut kept = Vec::with_capacity(refs.len());
                    for r in refs {
                        t.tick()?;
                        if f.matches_ctx(&self.view(r), ctx)? {
                            kept.push(r);
                        }
                    }
                    refs = kept;
                }
                Stage::Sort(s) => {
                    let order = s.top_order_by_fields(&refs, top_k(&stages[i + 1..]), |r, k| self.get(r, k));
                    crate::sort::permute(&mut refs, order);
                }
                Stage::Skip(n) => {
                    let n = usize::try_from(*n).unwrap_or(usize::MAX).min(refs.len());
                    refs.drain(..n);
                }
                Stage::Limit(n) => refs.truncate(usize::try_from(*n).unwrap_or(usize::MAX)),
                Stage::Count(name) => {
                    let counted = count_docs(refs.len(), name).into_iter().map(Row::Whole).collect();
                    return self.rows(&stages[i + 1..], counted, env, ctx);
                }
                _ => {
                    let owned = refs.into_iter().cloned().collect();
                    return self.rows(&stages[i..], owned, env, ctx);
                }
            }
        }
        Ok(self.materialize(refs.into_iter().cloned().collect()))
    }
}
