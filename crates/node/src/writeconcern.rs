//! Write concern on a standalone node: parsing `writeConcern` the way mongod validates it, and
//! the wait it asks for after the command ran.
//!
//! What a standalone can honour is the journal: `j: true` (and `fsync: true`, which mongod serves
//! from the journal too when it is durable) is acknowledged only after the engine has fsynced
//! every write made before the wait ([`docplane_engine::Engine::sync_journal`], group commit).
//! `w: "majority"` journals too. What a mongod standalone does there is not one thing in its
//! sources: `populateUnsetWriteConcernOptionsSyncMode` journals a majority write when the replica
//! set config's `writeConcernMajorityJournalDefault` says so (a standalone has no config), the
//! mock coordinator always journals it, the embedded one never. docplane takes the reading that
//! never promises more than was done: the majority of one node has the write on disk.
//!
//! Refused as mongod refuses them: `w` above 1 or a tag set (BadValue: no replication here),
//! `j` on a node without a journal (in memory), `j` with `fsync`, a `writeConcern` on a command
//! that does not take one (InvalidOptions), fields mongod does not know.

use bson::{Bson, Document};
use docplane_query::CommandError;

use crate::cmd::util::{as_i64, truthy, type_name};
use crate::state::NodeState;

/// What a command's write concern asks of this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteConcern {
    /// Acknowledge only once the journal is fsynced.
    pub journal: bool,
}

/// Whether the command takes a `writeConcern` (mongod's `supportsWriteConcern`), by its handler in
/// the command table.
pub fn supports_write_concern(name: &str, cmd: &Document) -> bool {
    use crate::cmd::table::{Handler as H, lookup};
    let Some(c) = lookup(name) else { return false };
    match c.handler {
        H::Insert
        | H::Update
        | H::Delete
        | H::FindAndModify
        | H::Create
        | H::Drop
        | H::CreateIndexes
        | H::DropIndexes
        | H::DropDatabase
        | H::RenameCollection
        | H::CreateUser
        | H::UpdateUser
        | H::DropUser
        | H::DropAllUsersFromDatabase
        | H::GrantRolesToUser
        | H::RevokeRolesFromUser => true,
        // Only a pipeline that writes ($out, $merge) takes one.
        H::Aggregate => cmd.get_array("pipeline").ok().is_some_and(|p| {
            p.iter()
                .any(|s| matches!(s, Bson::Document(d) if d.contains_key("$out") || d.contains_key("$merge")))
        }),
        _ => false,
    }
}

fn failed_to_parse(msg: impl Into<String>) -> CommandError {
    CommandError::new(9, "FailedToParse", msg)
}

fn flag(d: &Document, key: &str) -> Result<Option<bool>, CommandError> {
    match d.get(key) {
        None => Ok(None),
        Some(b @ (Bson::Boolean(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_))) => {
            Ok(Some(truthy(b)))
        }
        Some(_) => Err(failed_to_parse(format!("{key} must be numeric or a boolean value"))),
    }
}

/// Parses and validates the command's `writeConcern` against what this node is (a standalone,
/// `durable` when it has a journal). `Ok(None)` when the command carries none.
pub fn parse(name: &str, cmd: &Document, durable: bool) -> Result<Option<WriteConcern>, CommandError> {
    let wc = match cmd.get("writeConcern") {
        None | Some(Bson::Null) => return Ok(None),
        Some(Bson::Document(d)) => d,
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'writeConcern' is the wrong type '{}', expected type 'object'",
                type_name(other)
            )));
        }
    };
    if !supports_write_concern(name, cmd) {
        return Err(CommandError::new(72, "InvalidOptions", "Command does not support writeConcern"));
    }
    parse_document(wc, durable).map(Some)
}

/// Validates one write concern document.
fn parse_document(wc: &Document, durable: bool) -> Result<WriteConcern, CommandError> {
    for key in wc.keys() {
        if !matches!(key.as_str(), "w" | "j" | "fsync" | "wtimeout" | "provenance") {
            return Err(CommandError::new(
                40415,
                "Location40415",
                format!("BSON field 'writeConcern.{key}' is an unknown field."),
            ));
        }
    }
    let mut majority = false;
    match wc.get("w") {
        None => {}
        Some(Bson::String(s)) if s == "majority" => majority = true,
        Some(Bson::String(s)) => {
            return Err(CommandError::bad_value(format!(
                "cannot use non-majority 'w' mode {s} when a host is not a member of a replica set"
            )));
        }
        Some(Bson::Document(_)) => {
            return Err(CommandError::bad_value(
                "cannot use non-majority 'w' mode with tags when a host is not a member of a replica set",
            ));
        }
        Some(b @ (Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_))) => {
            let n = as_i64(b).ok_or_else(|| failed_to_parse("w has to be a whole number"))?;
            if !(0..=50).contains(&n) {
                return Err(failed_to_parse(format!(
                    "w has to be a non-negative number and not greater than 50; found: {n}"
                )));
            }
            if n > 1 {
                return Err(CommandError::bad_value("cannot use 'w' > 1 when a host is not replicated"));
            }
        }
        Some(_) => return Err(failed_to_parse("w has to be a number, string, or object")),
    }
    let j = flag(wc, "j")?.unwrap_or(false);
    let fsync = flag(wc, "fsync")?.unwrap_or(false);
    if j && fsync {
        return Err(failed_to_parse("fsync and j options cannot be used together"));
    }
    match wc.get("wtimeout") {
        // No replication to wait for on a standalone: nothing can time out.
        None | Some(Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_)) => {}
        Some(_) => return Err(failed_to_parse("wtimeout must be a number")),
    }
    match wc.get("provenance") {
        None | Some(Bson::String(_)) => {}
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'writeConcern.provenance' is the wrong type '{}', expected type 'string'",
                type_name(other)
            )));
        }
    }
    if j && !durable {
        return Err(CommandError::bad_value(
            "cannot use 'j' option when a host does not have journaling enabled",
        ));
    }
    Ok(WriteConcern { journal: j || fsync || majority })
}

/// The legacy `{getLastError: 1, j, fsync, w, wtimeout}`: the write concern fields sit at the top
/// level and apply to the connection's previous writes. Honoured like a `writeConcern` (the
/// journal is synced when asked), never answered without doing what it asks.
pub async fn get_last_error(state: &NodeState, cmd: &Document) -> Result<Document, CommandError> {
    let wc: Document = ["w", "j", "fsync", "wtimeout"]
        .iter()
        .filter_map(|k| cmd.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    let parsed = parse_document(&wc, state.engine.is_durable())?;
    wait(state, Some(parsed)).await?;
    Ok(bson::doc! {"err": Bson::Null, "n": 0})
}

/// Waits for what `wc` asks after the command ran: the journal fsync (shared with concurrent
/// waiters). Runs on a blocking thread; not interruptible (the write is done, only its durability
/// is awaited, as mongod's `waitUntilDurable`).
pub async fn wait(state: &NodeState, wc: Option<WriteConcern>) -> Result<(), CommandError> {
    let Some(wc) = wc else { return Ok(()) };
    if !wc.journal || !state.engine.is_durable() {
        return Ok(());
    }
    let engine = state.engine.clone();
    match tokio::task::spawn_blocking(move || engine.sync_journal()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "journal sync task failed");
            Err(CommandError::new(1, "InternalError", "internal error waiting for the journal"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use bson::doc;

    use super::*;

    fn p(wc: Document) -> Result<Option<WriteConcern>, CommandError> {
        parse("insert", &doc! {"insert": "c", "writeConcern": wc}, true)
    }

    #[test]
    fn journal_forms() {
        let yes = Some(WriteConcern { journal: true });
        let no = Some(WriteConcern { journal: false });
        assert_eq!(p(doc! {"j": true}).unwrap(), yes);
        assert_eq!(p(doc! {"w": 1, "j": 1}).unwrap(), yes);
        assert_eq!(p(doc! {"fsync": true}).unwrap(), yes);
        assert_eq!(p(doc! {"w": "majority"}).unwrap(), yes);
        assert_eq!(p(doc! {"w": "majority", "wtimeout": 1000}).unwrap(), yes);
        assert_eq!(p(doc! {"w": 1}).unwrap(), no);
        assert_eq!(p(doc! {"w": 0}).unwrap(), no);
        assert_eq!(p(doc! {"j": false}).unwrap(), no);
        assert_eq!(parse("insert", &doc! {"insert": "c"}, true).unwrap(), None);
    }

    #[tokio::test]
    async fn get_last_error_validates_its_write_concern() {
        let st = crate::state::NodeState::in_memory(crate::NodeConfig::default());
        assert!(get_last_error(&st, &doc! {"getLastError": 1}).await.is_ok());
        assert!(get_last_error(&st, &doc! {"getLastError": 1, "w": 1, "wtimeout": 100}).await.is_ok());
        assert_eq!(get_last_error(&st, &doc! {"getLastError": 1, "w": 2}).await.unwrap_err().code, 2);
        // In memory: no journal to honour j with.
        assert_eq!(get_last_error(&st, &doc! {"getLastError": 1, "j": true}).await.unwrap_err().code, 2);
    }

    #[test]
    fn refusals_carry_mongods_codes() {
        assert_eq!(p(doc! {"w": 2}).unwrap_err().code, 2);
        assert_eq!(p(doc! {"w": "dc1"}).unwrap_err().code, 2);
        assert_eq!(p(doc! {"w": -1}).unwrap_err().code, 9);
        assert_eq!(p(doc! {"j": true, "fsync": true}).unwrap_err().code, 9);
        assert_eq!(p(doc! {"j": "yes"}).unwrap_err().code, 9);
        assert_eq!(p(doc! {"x": 1}).unwrap_err().code, 40415);
        let e = parse("insert", &doc! {"insert": "c", "writeConcern": {"j": true}}, false).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (2, "cannot use 'j' option when a host does not have journaling enabled")
        );
        let e = parse("find", &doc! {"find": "c", "writeConcern": {"w": 1}}, true).unwrap_err();
        assert_eq!(e.code, 72);
        assert_eq!(parse("insert", &doc! {"insert": "c", "writeConcern": 1}, true).unwrap_err().code, 14);
        // A pipeline that writes takes one; a read-only one does not.
        let agg = |stage: Document| doc! {"aggregate": "c", "pipeline": [stage], "writeConcern": {"j": true}};
        assert!(parse("aggregate", &agg(doc! {"$out": "o"}), true).is_ok());
        assert_eq!(parse("aggregate", &agg(doc! {"$match": {}}), true).unwrap_err().code, 72);
    }
}
