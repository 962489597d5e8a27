//! Streaming pipelines: a pipeline whose stages all work document by document (`$match`,
//! `$project`, `$addFields`/`$set`/`$unset`, `$unwind`, `$replaceRoot`/`$replaceWith`,
//! `$lookup`, `$skip`, `$limit`) runs over its input chunk by chunk ([`Pipeline::stream_chunk`]),
//! so a cursor computes only what each batch needs. [`StreamState`] carries what the stages
//! remember between chunks: how many documents each `$skip` still drops and each `$limit` still
//! lets through, and the evaluation context (`let` values, one `$$NOW` for the whole run).
//! Chunk by chunk, the output is the same as [`Pipeline::run`] over the whole input.

use bson::Document;

use super::{Pipeline, PipelineEnv, Stage, run_stage};
use crate::error::Result;
use crate::expr::EvalCtx;

/// What a streaming pipeline remembers between chunks (see [`Pipeline::stream_state`]).
#[derive(Debug, Clone)]
pub struct StreamState {
    /// Per stage: for `$skip` the documents still to drop, for `$limit` those still to pass
    /// (other stages: unused).
    left: Vec<u64>,
    ctx: EvalCtx,
}

impl StreamState {
    /// Whether no further input can produce output (a `$limit` has let through all it may).
    pub fn exhausted(&self, p: &Pipeline) -> bool {
        p.stages.iter().zip(&self.left).any(|(s, n)| matches!(s, Stage::Limit(_)) && *n == 0)
    }
}

fn streams(stage: &Stage) -> bool {
    match stage {
        Stage::Match(_)
        | Stage::Project(_)
        | Stage::AddFields(_)
        | Stage::Unwind { .. }
        | Stage::ReplaceRoot(_)
        | Stage::Skip(_)
        | Stage::Limit(_) => true,
        // Per document, nested pipeline included; its foreign side is read per chunk.
        Stage::Lookup { .. } => true,
        _ => false,
    }
}

impl Pipeline {
    /// Whether every stage works document by document, so the pipeline can run chunk by chunk
    /// ([`Pipeline::stream_chunk`]).
    pub fn is_streaming(&self) -> bool {
        self.stages.iter().all(streams)
    }

    /// The state of a streaming run that has read nothing yet.
    pub fn stream_state(&self) -> StreamState {
        let left = self
            .stages
            .iter()
            .map(|s| match s {
                Stage::Skip(n) | Stage::Limit(n) => *n,
                _ => 0,
            })
            .collect();
        StreamState { left, ctx: self.lets.eval_ctx() }
    }

    /// Runs the next chunk of input through a streaming pipeline ([`Pipeline::is_streaming`]),
    /// `st` carrying the stages' counters from the chunks before.
    pub fn stream_chunk(
        &self,
        st: &mut StreamState,
        mut docs: Vec<Document>,
        env: &dyn PipelineEnv,
    ) -> Result<Vec<Document>> {
        env.check()?;
        for (i, stage) in self.stages.iter().enumerate() {
            if docs.is_empty() {
                break;
            }
            env.check()?;
            docs = match stage {
                Stage::Skip(_) => {
                    let n = usize::try_from(st.left[i]).unwrap_or(usize::MAX).min(docs.len());
                    st.left[i] -= n as u64;
                    docs.drain(..n);
                    docs
                }
                Stage::Limit(_) => {
                    let n = usize::try_from(st.left[i]).unwrap_or(usize::MAX).min(docs.len());
                    st.left[i] -= n as u64;
                    docs.truncate(n);
                    docs
                }
                _ => run_stage(stage, docs, env, &mut st.ctx)?,
            };
        }
        Ok(docs)
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use bson::{Document, doc};

    use super::super::{Pipeline, PipelineEnv};
    use crate::error::Result;
    use crate::interrupt::Interrupt;

    struct Env(Vec<Document>);
    impl Interrupt for Env {
        fn check(&self) -> Result<()> {
            Ok(())
        }
    }
    impl PipelineEnv for Env {
        fn lookup_collection(&self, _coll: &str) -> Result<Vec<Document>> {
            Ok(self.0.clone())
        }
    }

    /// The pipeline over `input` fed in chunks of `chunk`, as a cursor feeds it.
    fn chunked(p: &Pipeline, input: &[Document], chunk: usize, env: &Env) -> (Vec<Document>, usize) {
        let mut st = p.stream_state();
        let mut out = Vec::new();
        let mut fed = 0;
        for c in input.chunks(chunk) {
            if st.exhausted(p) {
                break;
            }
            fed += c.len();
            out.extend(p.stream_chunk(&mut st, c.to_vec(), env).unwrap());
        }
        (out, fed)
    }

    #[test]
    fn chunks_give_the_whole_run_s_result() {
        let env = Env(vec![doc! {"k": 1, "v": "a"}, doc! {"k": 2, "v": "b"}]);
        let input: Vec<Document> = (0..50).map(|i| doc! {"_id": i, "k": i % 3, "arr": [i, i + 1]}).collect();
        let stages = vec![
            doc! {"$match": {"k": {"$ne": 0}}},
            doc! {"$unwind": "$arr"},
            doc! {"$skip": 5},
            doc! {"$set": {"twice": {"$multiply": ["$arr", 2]}}},
            doc! {"$lookup": {"from": "f", "localField": "k", "foreignField": "k", "as": "f"}},
            doc! {"$project": {"arr": 0}},
            doc! {"$limit": 17},
        ];
        let p = Pipeline::parse(&stages).unwrap();
        assert!(p.is_streaming());
        let whole = p.run(input.clone(), &env).unwrap();
        assert_eq!(whole.len(), 17);
        for chunk in [1, 2, 7, 50] {
            let (got, _) = chunked(&p, &input, chunk, &env);
            assert_eq!(got, whole, "chunk {chunk}");
        }
        // The limit reached, no more input is read.
        let (_, fed) = chunked(&p, &input, 1, &env);
        assert!(fed < input.len(), "read {fed}");
    }

    #[test]
    fn blocking_stages_do_not_stream() {
        for s in [
            doc! {"$sort": {"a": 1}},
            doc! {"$group": {"_id": null}},
            doc! {"$count": "n"},
            doc! {"$facet": {"a": [{"$match": {}}]}},
            doc! {"$bucket": {"groupBy": "$a", "boundaries": [0, 1]}},
            doc! {"$sample": {"size": 1}},
            doc! {"$unionWith": "x"},
        ] {
            let p = Pipeline::parse(&[doc! {"$match": {}}, s.clone()]).unwrap();
            assert!(!p.is_streaming(), "{s}");
        }
    }
}
