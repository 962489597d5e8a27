//! Read concern on a standalone node, validated the way a standalone mongod validates it
//! (`repl::ReadConcernArgs::parse`, then `waitForReadConcern` on a node without replication;
//! jstests/core/read_concern.js shows what a standalone answers).
//!
//! The node is one copy of the data with no replication: `local`, `available` and `majority`
//! (a majority of one node has every acknowledged write) are served as they read now; what
//! needs a replica set is refused, never served as if it were `local`: `snapshot` and
//! `linearizable` and `afterOpTime` with 123 NotAReplicaSet, `afterClusterTime` with 20
//! IllegalOperation, `atClusterTime` (valid only with `snapshot`) with 72 InvalidOptions.

use bson::{Bson, Document};
use docplane_query::CommandError;

use crate::cmd::util::type_name;

fn not_a_replica_set(msg: impl Into<String>) -> CommandError {
    CommandError::new(123, "NotAReplicaSet", msg)
}

/// Validates the command's `readConcern`; `Ok(())` when it is absent or asks for nothing a
/// standalone cannot give.
pub fn check(cmd: &Document) -> Result<(), CommandError> {
    let rc = match cmd.get("readConcern") {
        None | Some(Bson::Null) => return Ok(()),
        Some(Bson::Document(d)) => d,
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'readConcern' is the wrong type '{}', expected type 'object'",
                type_name(other)
            )));
        }
    };
    for k in rc.keys() {
        if !matches!(
            k.as_str(),
            "level" | "afterOpTime" | "afterClusterTime" | "atClusterTime" | "provenance"
        ) {
            return Err(CommandError::location(
                40415,
                format!("BSON field 'readConcern.{k}' is an unknown field."),
            ));
        }
    }
    let level = match rc.get("level") {
        None => None,
        Some(Bson::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'readConcern.level' is the wrong type '{}', expected type 'string'",
                type_name(other)
            )));
        }
    };
    if let Some(l) = level
        && !matches!(l, "local" | "majority" | "linearizable" | "available" | "snapshot")
    {
        return Err(CommandError::failed_to_parse(format!(
            "readConcern.level must be either 'local', 'majority', 'linearizable', 'available', or 'snapshot', not '{l}'"
        )));
    }
    if rc.contains_key("atClusterTime") && level != Some("snapshot") {
        return Err(CommandError::invalid_options(
            "readConcern field atClusterTime is only valid with level snapshot",
        ));
    }
    if rc.contains_key("afterOpTime") {
        return Err(not_a_replica_set("node needs to be a replica set member to use read concern"));
    }
    if rc.contains_key("afterClusterTime") {
        return Err(CommandError::illegal_operation(
            "Cannot specify afterClusterTime readConcern without replication enabled",
        ));
    }
    match level {
        Some("snapshot") => {
            Err(not_a_replica_set("node needs to be a replica set member to use readConcern: snapshot"))
        }
        Some("linearizable") => {
            Err(not_a_replica_set("node needs to be a replica set member to use read concern"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use bson::doc;

    use super::*;

    fn rc(d: Document) -> Result<(), CommandError> {
        check(&doc! {"find": "c", "readConcern": d})
    }

    #[test]
    fn a_standalone_serves_what_one_copy_can() {
        assert!(check(&doc! {"find": "c"}).is_ok());
        assert!(rc(doc! {}).is_ok());
        for l in ["local", "available", "majority"] {
            assert!(rc(doc! {"level": l}).is_ok(), "{l}");
        }
    }

    #[test]
    fn what_needs_replication_is_refused() {
        assert_eq!(rc(doc! {"level": "snapshot"}).unwrap_err().code, 123);
        assert_eq!(rc(doc! {"level": "linearizable"}).unwrap_err().code, 123);
        assert_eq!(
            rc(doc! {"level": "local", "afterClusterTime": bson::Timestamp { time: 0, increment: 1 }})
                .unwrap_err()
                .code,
            20
        );
        assert_eq!(
            rc(doc! {"afterOpTime": {"ts": bson::Timestamp { time: 1, increment: 0 }, "t": 0}})
                .unwrap_err()
                .code,
            123
        );
        let ts = bson::Timestamp { time: 1, increment: 0 };
        assert_eq!(rc(doc! {"level": "local", "atClusterTime": ts}).unwrap_err().code, 72);
        assert_eq!(rc(doc! {"level": "snapshot", "atClusterTime": ts}).unwrap_err().code, 123);
        assert_eq!(rc(doc! {"level": "eventual"}).unwrap_err().code, 9);
        assert_eq!(rc(doc! {"level": 1}).unwrap_err().code, 14);
        assert_eq!(rc(doc! {"x": 1}).unwrap_err().code, 40415);
        assert_eq!(check(&doc! {"find": "c", "readConcern": "local"}).unwrap_err().code, 14);
    }
}
