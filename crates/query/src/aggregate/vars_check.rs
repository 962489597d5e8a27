//! The parse-time variable check of a pipeline ([`crate::vars::check_expr`] over every stage's
//! expressions, nested pipelines included): `$lookup`'s `let` names are in scope in its
//! pipeline, the command's `let` names everywhere.

use super::{AddSpec, Lookup, Pipeline, Stage};
use crate::error::Result;
use crate::vars::check_expr;

fn add_spec(spec: &[(String, AddSpec)], scope: &mut Vec<String>) -> Result<()> {
    for (_, s) in spec {
        match s {
            AddSpec::Value(e) => check_expr(e, scope)?,
            AddSpec::Nested(n) => add_spec(n, scope)?,
        }
    }
    Ok(())
}

impl Pipeline {
    /// Fails with 17276 when a stage reads a user variable that is neither in `scope` nor bound
    /// around it.
    pub(crate) fn check_vars(&self, scope: &mut Vec<String>) -> Result<()> {
        for s in &self.stages {
            match s {
                Stage::Match(f) => f.check_vars(scope)?,
                Stage::Project(p) => p.check_vars(scope)?,
                Stage::AddFields(spec) => add_spec(spec, scope)?,
                Stage::Group { id, accs } | Stage::Bucket { group_by: id, accs, .. } => {
                    check_expr(id, scope)?;
                    for (_, _, e) in accs {
                        check_expr(e, scope)?;
                    }
                }
                Stage::ReplaceRoot(e) | Stage::SortByCount(e) | Stage::Documents(e) => check_expr(e, scope)?,
                Stage::Lookup(Lookup { lets, pipeline, .. }) => {
                    for (_, e) in lets {
                        check_expr(e, scope)?;
                    }
                    if let Some(p) = pipeline {
                        let mark = scope.len();
                        scope.extend(lets.iter().map(|(n, _)| n.clone()));
                        let r = p.check_vars(scope);
                        scope.truncate(mark);
                        r?;
                    }
                }
                Stage::Facet(fs) => {
                    for (_, p) in fs {
                        p.check_vars(scope)?;
                    }
                }
                Stage::UnionWith { pipeline: Some(p), .. } => p.check_vars(scope)?,
                Stage::UnionWith { pipeline: None, .. }
                | Stage::Sort(_)
                | Stage::Skip(_)
                | Stage::Limit(_)
                | Stage::Count(_)
                | Stage::Unwind { .. }
                | Stage::Sample(_) => {}
            }
        }
        Ok(())
    }
}
