//! Set operators: `$setUnion`, `$setIntersection`, `$setDifference`, `$setEquals`,
//! `$setIsSubset`, `$allElementsTrue`/`$anyElementTrue` (elements compared by canonical key).

use std::collections::HashSet;

use bson::Bson;

use super::{OpFn, arg, truthy, type_err, type_name};
use crate::compare::canonical_key;
use crate::error::{CommandError, Result};

/// The positional operators of this module.
pub(super) const OPS: &[(&str, OpFn)] = &[
    ("$setUnion", union_intersection),
    ("$setIntersection", union_intersection),
    ("$setDifference", difference_subset),
    ("$setIsSubset", difference_subset),
    ("$setEquals", equals),
    ("$allElementsTrue", all_any),
    ("$anyElementTrue", all_any),
];

fn set_of(v: &Bson, op: &str) -> Result<Option<Vec<Bson>>> {
    match v {
        Bson::Null | Bson::Undefined => Ok(None),
        Bson::Array(a) => Ok(Some(a.clone())),
        other => Err(CommandError::location(
            17044,
            format!("All operands of {op} must be arrays. One argument is of type: {}", type_name(other)),
        )),
    }
}

fn key_of(v: &Bson) -> String {
    let mut s = String::new();
    canonical_key(v, &mut s);
    s
}

fn union_intersection(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let mut sets = Vec::new();
    for x in &v {
        match set_of(x, name)? {
            Some(s) => sets.push(s),
            None => return Ok(Bson::Null),
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    if name == "$setUnion" {
        for s in sets {
            for e in s {
                if seen.insert(key_of(&e)) {
                    out.push(e);
                }
            }
        }
    } else if let Some((first, rest)) = sets.split_first() {
        let rest_keys: Vec<HashSet<String>> = rest.iter().map(|s| s.iter().map(key_of).collect()).collect();
        for e in first {
            let k = key_of(e);
            if rest_keys.iter().all(|rk| rk.contains(&k)) && seen.insert(k) {
                out.push(e.clone());
            }
        }
    }
    Ok(Bson::Array(out))
}

fn difference_subset(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    let a1: &Bson = arg(&v, 1);
    let (Some(x), Some(y)) = (set_of(a0, name)?, set_of(a1, name)?) else {
        return Ok(Bson::Null);
    };
    let yk: HashSet<String> = y.iter().map(key_of).collect();
    if name == "$setIsSubset" {
        return Ok(Bson::Boolean(x.iter().all(|e| yk.contains(&key_of(e)))));
    }
    let mut seen = HashSet::new();
    Ok(Bson::Array(
        x.into_iter()
            .filter(|e| {
                let k = key_of(e);
                !yk.contains(&k) && seen.insert(k)
            })
            .collect(),
    ))
}

fn equals(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let mut keys: Option<HashSet<String>> = None;
    for x in &v {
        let s = set_of(x, name)?
            .ok_or_else(|| CommandError::location(17044, "All operands of $setEquals must be arrays."))?;
        let k: HashSet<String> = s.iter().map(key_of).collect();
        match &keys {
            None => keys = Some(k),
            Some(prev) if *prev != k => return Ok(Bson::Boolean(false)),
            Some(_) => {}
        }
    }
    Ok(Bson::Boolean(true))
}

fn all_any(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    match &a0 {
        Bson::Array(a) => Ok(Bson::Boolean(if name == "$allElementsTrue" {
            a.iter().all(truthy)
        } else {
            a.iter().any(truthy)
        })),
        other => Err(type_err(17040, name, "'s argument must be an array", other)),
    }
}
