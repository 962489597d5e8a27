//! The Stable API parameters (`apiVersion`, `apiStrict`, `apiDeprecationErrors`), checked as
//! mongod 7.0 checks them before a command runs (`initializeAPIParameters` in
//! `service_entry_point_common.cpp`, `APIParameters::fromClient`, and the aggregation stages'
//! `AllowedWithApiStrict`):
//!
//! - `apiStrict` or `apiDeprecationErrors` without `apiVersion`: 4886600; a non-string version
//!   or a non-boolean flag: 14 TypeMismatch; a version other than "1": 322 APIVersionError (mongod
//!   accepts "2" only with its `acceptApiVersion2` test parameter, which the node does not have);
//! - `apiStrict: true` and a command whose table row is not in the version: 323 APIStrictError;
//!   an `aggregate` (or an explained one) with a stage mongod never allows in version 1
//!   (`$currentOp`, `$listLocalSessions`, `$listSessions`, `$collStats`, `$indexStats`,
//!   `$planCacheStats`, ..., at any depth of `$facet`, `$lookup` and `$unionWith`): 323 too;
//! - `apiDeprecationErrors: true` and a command deprecated in the version: 324
//!   APIDeprecationError.
//!
//! Not checked: the command fields and the expression operators that mongod marks unstable
//! (`find`'s `min`, `returnKey`, ..., refused by mongod with `apiStrict: true`); the node runs
//! them as it would without the parameter.

use bson::{Bson, Document};
use docplane_query::CommandError;
use docplane_query::error::codes;

use super::table::{Command, Handler};
use super::util;

/// Stages mongod marks `AllowedWithApiStrict::kNeverInVersion1`.
const STAGES_NOT_IN_V1: &[&str] = &[
    "$collStats",
    "$currentOp",
    "$indexStats",
    "$listCatalog",
    "$listLocalSessions",
    "$listSessions",
    "$listSearchIndexes",
    "$planCacheStats",
    "$shardedDataDistribution",
];

/// The parameters as the client sent them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ApiParams<'a> {
    version: Option<&'a str>,
    strict: bool,
    deprecation_errors: bool,
}

fn flag(cmd: &Document, key: &str) -> Result<Option<bool>, CommandError> {
    match cmd.get(key) {
        None => Ok(None),
        Some(Bson::Boolean(b)) => Ok(Some(*b)),
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field 'APIParametersFromClient.{key}' is the wrong type '{}', expected type 'bool'",
            util::type_name(other)
        ))),
    }
}

/// mongod's `APIParameters::fromClient` and its checks.
fn parse(cmd: &Document) -> Result<ApiParams<'_>, CommandError> {
    let version = match cmd.get("apiVersion") {
        None => None,
        Some(Bson::String(v)) => Some(v.as_str()),
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'APIParametersFromClient.apiVersion' is the wrong type '{}', expected type 'string'",
                util::type_name(other)
            )));
        }
    };
    let strict = flag(cmd, "apiStrict")?;
    let deprecation_errors = flag(cmd, "apiDeprecationErrors")?;
    if version.is_none() {
        for (given, name) in [(strict, "apiStrict"), (deprecation_errors, "apiDeprecationErrors")] {
            if given.is_some() {
                return Err(CommandError::location(
                    4886600,
                    format!("Provided {name} without passing apiVersion"),
                ));
            }
        }
    }
    if let Some(v) = version
        && v != "1"
    {
        return Err(CommandError::with_code(codes::API_VERSION_ERROR, "API version must be \"1\""));
    }
    Ok(ApiParams {
        version,
        strict: strict.unwrap_or(false),
        deprecation_errors: deprecation_errors.unwrap_or(false),
    })
}

/// Checks `cmd`'s Stable API parameters against the command `spec` (see the module doc).
pub fn check(spec: &Command, cmd: &Document) -> Result<(), CommandError> {
    let params = parse(cmd)?;
    let Some(version) = params.version else { return Ok(()) };
    if params.strict && !spec.api_versions.contains(&version) {
        return Err(CommandError::with_code(
            codes::API_STRICT_ERROR,
            format!(
                "Provided apiStrict:true, but the command {} is not in API Version {version}. Information on \
                 supported commands and migrations in API Version {version} can be found at \
                 https://dochub.mongodb.org/core/manual-versioning",
                spec.name
            ),
        ));
    }
    if params.deprecation_errors && spec.deprecated_api_versions.contains(&version) {
        return Err(CommandError::with_code(
            codes::API_DEPRECATION_ERROR,
            format!(
                "Provided apiDeprecationErrors:true, but the command {} is deprecated in API Version {version}",
                spec.name
            ),
        ));
    }
    if params.strict {
        let pipeline = match spec.handler {
            Handler::Aggregate => cmd.get("pipeline"),
            Handler::Explain => match cmd.get("explain") {
                Some(Bson::Document(inner)) if inner.contains_key("aggregate") => inner.get("pipeline"),
                _ => None,
            },
            _ => None,
        };
        if let Some(Bson::Array(stages)) = pipeline {
            check_stages(stages, version)?;
        }
    }
    Ok(())
}

/// Refuses a stage not in the version, here or in a sub-pipeline.
fn check_stages(stages: &[Bson], version: &str) -> Result<(), CommandError> {
    for stage in stages {
        let Bson::Document(stage) = stage else { continue };
        let Some((name, spec)) = stage.iter().next() else { continue };
        if STAGES_NOT_IN_V1.contains(&name.as_str()) || name.starts_with("$_internal") {
            return Err(CommandError::with_code(
                codes::API_STRICT_ERROR,
                format!("{name} is not allowed with 'apiStrict: true' in API Version {version}"),
            ));
        }
        let Bson::Document(spec) = spec else { continue };
        match name.as_str() {
            "$facet" => {
                for sub in spec.values() {
                    if let Bson::Array(sub) = sub {
                        check_stages(sub, version)?;
                    }
                }
            }
            "$lookup" | "$unionWith" => {
                if let Some(Bson::Array(sub)) = spec.get("pipeline") {
                    check_stages(sub, version)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use bson::doc;

    use super::*;
    use crate::cmd::table::lookup;

    fn code(name: &str, cmd: Document) -> Option<i32> {
        check(lookup(name).unwrap(), &cmd).err().map(|e| e.code)
    }

    #[test]
    fn parameters_are_checked_as_mongod_checks_them() {
        assert_eq!(code("ping", doc! {"ping": 1, "apiStrict": true}), Some(4886600));
        assert_eq!(code("ping", doc! {"ping": 1, "apiDeprecationErrors": false}), Some(4886600));
        assert_eq!(code("ping", doc! {"ping": 1, "apiVersion": 1}), Some(14));
        assert_eq!(code("ping", doc! {"ping": 1, "apiVersion": "2"}), Some(322));
        assert_eq!(code("ping", doc! {"ping": 1, "apiVersion": "1", "apiStrict": "true"}), Some(14));
        assert_eq!(
            code(
                "ping",
                doc! {"ping": 1, "apiVersion": "1", "apiStrict": true, "apiDeprecationErrors": true}
            ),
            None
        );
        assert_eq!(code("listCommands", doc! {"listCommands": 1, "apiVersion": "1"}), None);
        assert_eq!(
            code("listCommands", doc! {"listCommands": 1, "apiVersion": "1", "apiStrict": true}),
            Some(323)
        );
        assert_eq!(code("isMaster", doc! {"isMaster": 1, "apiVersion": "1", "apiStrict": true}), Some(323));
        assert_eq!(code("hello", doc! {"hello": 1, "apiVersion": "1", "apiStrict": true}), None);
        assert_eq!(code("distinct", doc! {"distinct": "c", "apiVersion": "1", "apiStrict": true}), Some(323));
        assert_eq!(code("count", doc! {"count": "c", "apiVersion": "1", "apiStrict": true}), None);
        assert_eq!(
            code("testDeprecation", doc! {"testDeprecation": 1, "apiVersion": "1", "apiStrict": true}),
            None
        );
        assert_eq!(
            code(
                "testDeprecation",
                doc! {"testDeprecation": 1, "apiVersion": "1", "apiDeprecationErrors": true}
            ),
            Some(324)
        );
    }

    #[test]
    fn stages_outside_version_1_are_refused_at_any_depth() {
        let agg = |p: Bson| doc! {"aggregate": 1, "pipeline": p, "cursor": {}, "apiVersion": "1", "apiStrict": true};
        assert_eq!(
            code("aggregate", agg(bson::bson!([{"$listLocalSessions": {}}, {"$limit": 1}]))),
            Some(323)
        );
        assert_eq!(code("aggregate", agg(bson::bson!([{"$match": {}}]))), None);
        assert_eq!(
            code("aggregate", agg(bson::bson!([{"$facet": {"a": [{"$indexStats": {}}]}}]))),
            Some(323)
        );
        assert_eq!(
            code(
                "aggregate",
                agg(bson::bson!([{"$unionWith": {"coll": "x", "pipeline": [{"$collStats": {}}]}}]))
            ),
            Some(323)
        );
        let mut lax = agg(bson::bson!([{"$currentOp": {}}]));
        lax.insert("apiStrict", false);
        assert_eq!(code("aggregate", lax), None);
    }
}
