//! Rough throughput figures for the matcher, sort, update and pipeline:
//! `cargo run --release -p docplane-query --example perf`.

use std::time::Instant;

use bson::{Document, doc};
use docplane_query::{Filter, NeverInterrupt, Pipeline, PipelineEnv, Result, SortSpec, Update};

struct Env;
impl docplane_query::Interrupt for Env {
    fn check(&self) -> Result<()> {
        docplane_query::Interrupt::check(&NeverInterrupt)
    }
}
impl PipelineEnv for Env {
    fn lookup_collection(&self, _coll: &str) -> Result<Vec<Document>> {
        Ok(Vec::new())
    }
}

fn main() -> Result<()> {
    let n = 200_000;
    let docs: Vec<Document> = (0..n)
        .map(|i| doc! {"_id": i, "a": i % 100, "b": format!("s{}", i % 7), "tags": ["x", "y", (i % 3).to_string()], "sub": {"v": i as f64 / 3.0}})
        .collect();
    let f = Filter::parse(
        &doc! {"a": {"$gt": 50}, "b": {"$in": ["s1", "s2"]}, "tags": "2", "sub.v": {"$lt": 50000.0}},
    )?;
    let t = Instant::now();
    let hits = docs.iter().filter(|d| f.matches(d)).count();
    println!("match: {n} docs in {:?} ({hits} hits)", t.elapsed());

    let s = SortSpec::parse(&doc! {"b": 1, "sub.v": -1})?;
    let mut sorted = docs.clone();
    let t = Instant::now();
    s.sort(&mut sorted);
    println!("sort: {n} docs in {:?}", t.elapsed());

    let u = Update::parse(&doc! {"$inc": {"a": 1}, "$set": {"sub.w": true}, "$push": {"tags": "z"}}, None)?;
    let mut updated = docs.clone();
    let t = Instant::now();
    for d in updated.iter_mut() {
        u.apply(d, false)?;
    }
    println!("update: {n} docs in {:?}", t.elapsed());

    let p = Pipeline::parse(&[
        doc! {"$match": {"a": {"$gte": 10}}},
        doc! {"$group": {"_id": "$b", "n": {"$sum": 1}, "avg": {"$avg": "$sub.v"}}},
        doc! {"$sort": {"n": -1}},
    ])?;
    let t = Instant::now();
    let out = p.run(docs, &Env)?;
    println!("pipeline: {n} docs in {:?} ({} groups)", t.elapsed(), out.len());
    Ok(())
}
