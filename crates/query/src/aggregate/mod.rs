//! The aggregation pipeline: stage parsing and execution over in-memory documents.
//!
//! Supported stages: `$match`, `$project`, `$addFields`/`$set`, `$unset`, `$group`, `$sort`,
//! `$skip`, `$limit`, `$count`, `$unwind`, `$lookup` (equality and pipeline forms, the foreign
//! collection comes from [`PipelineEnv::lookup_collection`]), `$replaceRoot`/`$replaceWith`,
//! `$sortByCount`, `$facet`, `$sample`, `$documents`. Unknown stages fail with 40324
//! "Unrecognized pipeline stage name". Every stage calls `env.check()` once and at least every
//! 128 documents, so a killed operation stops promptly.

mod fields;
mod group;
mod late;
mod lookup;
mod parse;
mod stages;

use bson::{Bson, Document};

use crate::error::Result;
use crate::expr::{EvalCtx, Expr};
use crate::filter::Filter;
use crate::interrupt::{CHECK_EVERY, Interrupt};
use crate::projection::Projection;
use crate::sort::SortSpec;
use late::{Row, Run, partial_region, runs_on_partial};
use parse::parse_stage;

/// What a pipeline needs from its surroundings: interruption and `$lookup`'s foreign
/// collections (in the pipeline's database).
pub trait PipelineEnv: Interrupt {
    /// All documents of collection `coll` (empty if it does not exist).
    fn lookup_collection(&self, coll: &str) -> Result<Vec<Document>>;
}

/// Documents a pipeline can read in part before it builds any of them whole (late
/// materialization, see [`Pipeline::run_source`]).
///
/// Document `i` is [`DocSource::fixed`]`(i)` (a stored document, read in place) with its *live*
/// fields ([`DocSource::is_live`]) taken from [`DocSource::partial`] instead; without a fixed
/// document, every field comes from `partial`.
pub trait DocSource {
    /// Number of documents.
    fn len(&self) -> usize;
    /// Whether there is none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The stored document holding document `i`'s fields that are not live, as they are.
    fn fixed(&self, _i: usize) -> Option<&Document> {
        None
    }
    /// Whether the value of top-level field `name` may differ from the fixed document's (the
    /// live fields are read from `partial`).
    fn is_live(&self, _name: &str) -> bool {
        true
    }
    /// Document `i`'s values of those of the top-level `fields` it has that do not come from
    /// its fixed document (all of them when it has none): `(j, value)` for each `fields[j]`,
    /// appended to `out` in any order.
    fn partial_values(&self, i: usize, fields: &[String], out: &mut Vec<(usize, Bson)>);
    /// Document `i`, whole.
    fn whole(&self, i: usize) -> Document;
    /// Whether some document of the source may have the top-level field `name`.
    fn may_have(&self, name: &str) -> bool;
}

/// The top-level fields something reads, or the whole document.
#[derive(Debug, Clone, Default)]
pub(crate) struct Deps {
    fields: Vec<String>,
    whole: bool,
}

impl Deps {
    pub(crate) fn add(&mut self, field: &str) {
        if !self.whole && !self.fields.iter().any(|f| f == field) {
            self.fields.push(field.to_owned());
        }
    }
    pub(crate) fn set_whole(&mut self) {
        self.whole = true;
        self.fields.clear();
    }
    /// The fields, or `None` for the whole document.
    pub(crate) fn into_fields(self) -> Option<Vec<String>> {
        (!self.whole).then_some(self.fields)
    }
}

/// A parsed aggregation pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    stages: Vec<Stage>,
    /// The command's `let` variables ([`Pipeline::with_let`]).
    lets: crate::vars::LetVars,
}

#[derive(Debug, Clone)]
enum AddSpec {
    Value(Expr),
    Nested(Vec<(String, AddSpec)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acc {
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    Push,
    AddToSet,
    MergeObjects,
    StdDevPop,
    StdDevSamp,
}

/// A `$lookup` stage.
#[derive(Debug, Clone)]
struct Lookup {
    from: String,
    local: Option<String>,
    foreign: Option<String>,
    as_field: String,
    lets: Vec<(String, Expr)>,
    pipeline: Option<Box<Pipeline>>,
}

#[derive(Debug, Clone)]
enum Stage {
    Match(Filter),
    Project(Projection),
    AddFields(Vec<(String, AddSpec)>),
    Group { id: Expr, accs: Vec<(String, Acc, Expr)> },
    Sort(SortSpec),
    Skip(u64),
    Limit(u64),
    Count(String),
    Unwind { path: Vec<String>, index: Option<String>, preserve: bool },
    Lookup(Lookup),
    ReplaceRoot(Expr),
    SortByCount(Expr),
    Facet(Vec<(String, Pipeline)>),
    Sample(u64),
    Documents(Expr),
    UnionWith { coll: String, pipeline: Option<Box<Pipeline>> },
    Bucket { group_by: Expr, boundaries: Vec<Bson>, default: Option<Bson>, accs: Vec<(String, Acc, Expr)> },
}

/// Counts documents, polls for interruption at each and checks every [`CHECK_EVERY`] of them.
struct Ticker<'a> {
    env: &'a dyn PipelineEnv,
    n: usize,
}

impl Ticker<'_> {
    fn tick(&mut self) -> Result<()> {
        crate::interrupt::poll()?;
        self.n += 1;
        if self.n.is_multiple_of(CHECK_EVERY) {
            self.env.check()?;
        }
        Ok(())
    }
}

impl Pipeline {
    /// Parses the stages. 40324 on unknown stages.
    pub fn parse(stages: &[Document]) -> Result<Self> {
        Ok(Pipeline {
            stages: stages.iter().map(parse_stage).collect::<Result<_>>()?,
            lets: crate::vars::LetVars::none(),
        })
    }

    /// The pipeline of a command with `let` variables: every stage (nested pipelines included)
    /// sees them, and so does the leading `$match` the engine may answer with an index.
    #[must_use]
    pub fn with_let(mut self, lets: &crate::vars::LetVars) -> Self {
        for s in &mut self.stages {
            if let Stage::Match(f) = s {
                f.bind_let(lets);
            }
        }
        self.lets = lets.clone();
        self
    }

    /// [`Pipeline::with_let`] for a command's pipeline, after checking that every variable its
    /// stages read is a system variable, one of `lets` or bound around it (17276 otherwise, when
    /// the command is parsed, as mongod fails it, rather than only once a document reaches it).
    pub fn checked_let(self, lets: &crate::vars::LetVars) -> Result<Self> {
        self.check_vars(&mut lets.names())?;
        Ok(self.with_let(lets))
    }

    /// The pipeline without its first stage (when a caller has applied that stage itself).
    #[must_use]
    pub fn without_first(mut self) -> Self {
        if !self.stages.is_empty() {
            self.stages.remove(0);
        }
        self
    }

    /// Number of stages.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// True for an empty pipeline.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// The filter of a leading `$match`, which the engine may answer with an index.
    pub fn leading_match(&self) -> Option<&Filter> {
        match self.stages.first() {
            Some(Stage::Match(f)) => Some(f),
            _ => None,
        }
    }

    /// Names of the foreign collections this pipeline's `$lookup` stages read (also nested).
    pub fn lookup_collections(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.stages {
            match s {
                Stage::Lookup(Lookup { from, pipeline, .. }) => {
                    out.push(from.clone());
                    if let Some(p) = pipeline {
                        out.extend(p.lookup_collections());
                    }
                }
                Stage::Facet(fs) => {
                    for (_, p) in fs {
                        out.extend(p.lookup_collections());
                    }
                }
                Stage::UnionWith { coll, pipeline } => {
                    out.push(coll.clone());
                    if let Some(p) = pipeline {
                        out.extend(p.lookup_collections());
                    }
                }
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Runs the pipeline over the documents of `src`, building as few of them whole as it can:
    /// when the leading stages only select, order, count or add fields (`$match`, `$addFields` /
    /// `$set`, `$sort`, `$skip`, `$limit`, `$count`, and `$facet` pipelines made of them as far as
    /// they go), read named fields only (no `$$ROOT`) and add none the source's documents have,
    /// they run on partial documents holding just the fields they read; only the documents that
    /// come out of them are built whole. The result is the same as [`Pipeline::run`] over every
    /// document built whole, field order included.
    pub fn run_source(&self, src: &dyn DocSource, env: &dyn PipelineEnv) -> Result<Vec<Document>> {
        let mut ctx = self.lets.eval_ctx();
        env.check()?;
        let mut t = Ticker { env, n: 0 };
        let mut deps = Deps::default();
        let mut written = Vec::new();
        partial_region(&self.stages, &mut deps, &mut written);
        let partial =
            self.stages.first().is_some_and(runs_on_partial) && !written.iter().any(|w| src.may_have(w));
        if let (true, Some(mut fields)) = (partial, deps.into_fields()) {
            // Fields the stages add are not the source's: not asked for. The live ones first:
            // a row with a fixed document asks for those alone, and both answers index the names.
            fields.retain(|f| !written.contains(f));
            fields.sort_by_key(|f| !src.is_live(f));
            let live = fields.iter().take_while(|f| src.is_live(f)).count();
            let read = fields.len();
            let mut names = fields;
            names.extend(written.iter().cloned());
            let mut rows = Vec::with_capacity(src.len());
            for i in 0..src.len() {
                t.tick()?;
                let mut own = Vec::with_capacity(live + written.len());
                let asked = if src.fixed(i).is_some() { &names[..live] } else { &names[..read] };
                if !asked.is_empty() {
                    src.partial_values(i, asked, &mut own);
                }
                rows.push(Row::Partial { src: i, own });
            }
            let run = Run { src, names: &names, read };
            return run.rows(&self.stages, rows, env, &mut ctx);
        }
        let mut docs = Vec::with_capacity(src.len());
        for i in 0..src.len() {
            t.tick()?;
            docs.push(src.whole(i));
        }
        run_stages(&self.stages, docs, env, &mut ctx)
    }

    /// Runs the pipeline over `input`.
    pub fn run(&self, input: Vec<Document>, env: &dyn PipelineEnv) -> Result<Vec<Document>> {
        let mut ctx = self.lets.eval_ctx();
        self.run_ctx(input, env, &mut ctx)
    }

    fn run_ctx(
        &self,
        docs: Vec<Document>,
        env: &dyn PipelineEnv,
        ctx: &mut EvalCtx,
    ) -> Result<Vec<Document>> {
        env.check()?;
        run_stages(&self.stages, docs, env, ctx)
    }

    /// Runs the pipeline over documents it may not take ([`Pipeline::run_refs`]); same result as
    /// `run_ctx(docs.to_vec())`.
    fn run_borrowed(
        &self,
        docs: &[Document],
        env: &dyn PipelineEnv,
        ctx: &mut EvalCtx,
    ) -> Result<Vec<Document>> {
        self.run_refs_ctx(docs.iter().collect(), env, ctx)
    }

    /// Runs the pipeline over documents shared with their owner (the engine's stored
    /// documents): the leading `$match`, `$sort`, `$skip`, `$limit`, `$count` and a `$group`
    /// read them in place, and only what reaches another stage is copied. Same result as
    /// [`Pipeline::run`] over copies.
    pub fn run_refs(&self, docs: Vec<&Document>, env: &dyn PipelineEnv) -> Result<Vec<Document>> {
        let mut ctx = self.lets.eval_ctx();
        self.run_refs_ctx(docs, env, &mut ctx)
    }

    fn run_refs_ctx(
        &self,
        mut refs: Vec<&Document>,
        env: &dyn PipelineEnv,
        ctx: &mut EvalCtx,
    ) -> Result<Vec<Document>> {
        env.check()?;
        for (i, stage) in self.stages.iter().enumerate() {
            env.check()?;
            match stage {
                Stage::Match(f) => {
                    let mut t = Ticker { env, n: 0 };
                    let mut kept = Vec::with_capacity(refs.len());
                    for d in refs {
                        t.tick()?;
                        if f.matches_ctx(d, ctx)? {
                            kept.push(d);
                        }
                    }
                    refs = kept;
                }
                Stage::Sort(s) => {
                    s.sort_top(&mut refs, top_k(&self.stages[i + 1..]));
                    crate::mem::check_sort(refs.iter().copied())?;
                }
                Stage::Skip(n) => {
                    let n = usize::try_from(*n).unwrap_or(usize::MAX).min(refs.len());
                    refs.drain(..n);
                }
                Stage::Limit(n) => refs.truncate(usize::try_from(*n).unwrap_or(usize::MAX)),
                Stage::Count(name) => {
                    let counted = count_docs(refs.len(), name);
                    return run_stages(&self.stages[i + 1..], counted, env, ctx);
                }
                Stage::Group { id, accs } => {
                    let mut t = Ticker { env, n: 0 };
                    let grouped = group::group(id, accs, refs.into_iter(), &mut t, ctx)?;
                    return run_stages(&self.stages[i + 1..], grouped, env, ctx);
                }
                _ => {
                    let owned = refs.into_iter().cloned().collect();
                    return run_stages(&self.stages[i..], owned, env, ctx);
                }
            }
        }
        Ok(refs.into_iter().cloned().collect())
    }
}

/// How many documents a `$sort` followed by `rest` can pass on at most: `$skip`s then a `$limit`
/// bound it (MongoDB folds them into a top-k sort); anything else does not.
fn top_k(rest: &[Stage]) -> usize {
    let mut skipped: usize = 0;
    for stage in rest {
        match stage {
            Stage::Skip(n) => skipped = skipped.saturating_add(usize::try_from(*n).unwrap_or(usize::MAX)),
            Stage::Limit(n) => return skipped.saturating_add(usize::try_from(*n).unwrap_or(usize::MAX)),
            _ => return usize::MAX,
        }
    }
    usize::MAX
}

/// `$count`'s output for `n` documents: nothing for none.
fn count_docs(n: usize, name: &str) -> Vec<Document> {
    if n == 0 {
        return Vec::new();
    }
    let v = i32::try_from(n).map(Bson::Int32).unwrap_or(Bson::Int64(n as i64));
    let mut d = Document::new();
    d.insert(name.to_owned(), v);
    vec![d]
}

fn run_stages(
    stages: &[Stage],
    mut docs: Vec<Document>,
    env: &dyn PipelineEnv,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    for (i, stage) in stages.iter().enumerate() {
        env.check()?;
        docs = match stage {
            Stage::Sort(s) => {
                let mut docs = docs;
                s.sort_top(&mut docs, top_k(&stages[i + 1..]));
                crate::mem::check_sort(&docs)?;
                docs
            }
            _ => run_stage(stage, docs, env, ctx)?,
        };
    }
    Ok(docs)
}

fn run_stage(
    stage: &Stage,
    docs: Vec<Document>,
    env: &dyn PipelineEnv,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    let mut t = Ticker { env, n: 0 };
    match stage {
        Stage::Match(f) => stages::matching(f, docs, &mut t, ctx),
        Stage::Project(p) => stages::project(p, docs, &mut t, ctx),
        Stage::AddFields(spec) if spec.iter().all(|(_, s)| matches!(s, AddSpec::Value(_))) => {
            fields::add_top_level(spec, docs, &mut t, ctx)
        }
        Stage::AddFields(spec) => fields::add_nested(spec, docs, &mut t, ctx),
        Stage::Group { id, accs } => group::group(id, accs, docs.iter(), &mut t, ctx),
        Stage::Sort(s) => {
            let mut docs = docs;
            s.sort(&mut docs);
            crate::mem::check_sort(&docs)?;
            Ok(docs)
        }
        Stage::Skip(n) => Ok(docs.into_iter().skip(usize::try_from(*n).unwrap_or(usize::MAX)).collect()),
        Stage::Limit(n) => Ok(docs.into_iter().take(usize::try_from(*n).unwrap_or(usize::MAX)).collect()),
        Stage::Count(name) => Ok(count_docs(docs.len(), name)),
        Stage::Unwind { path, index, preserve } => {
            stages::unwind(path, index.as_deref(), *preserve, docs, &mut t)
        }
        Stage::Lookup(spec) => lookup::lookup(spec, docs, env, &mut t, ctx),
        Stage::ReplaceRoot(e) => stages::replace_root(e, docs, &mut t, ctx),
        Stage::SortByCount(e) => group::sort_by_count(e, docs, env, ctx),
        Stage::Facet(facets) => stages::facet(facets, docs, env, ctx),
        Stage::Sample(n) => stages::sample(*n, docs),
        Stage::UnionWith { coll, pipeline } => lookup::union_with(coll, pipeline.as_deref(), docs, env, ctx),
        Stage::Bucket { group_by, boundaries, default, accs } => {
            group::bucket(group_by, boundaries, default.as_ref(), accs, docs, &mut t, ctx)
        }
        Stage::Documents(e) => stages::documents(e, ctx),
    }
}

mod stream;
mod vars_check;
pub use stream::StreamState;

#[cfg(test)]
mod tests;
