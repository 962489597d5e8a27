//! Reading a node's current operations and killing one, through any [`NodeTransport`].
//!
//! `$currentOp` (3.6+; `idleSessions` from 4.0) or the `currentOp` command with `$all: true`
//! (3.4) is read with all users and idle connections ([`current_op_request`]). What the entries
//! mean (the vendor's sessions) is `docplane-sessions`' business; this module only reads them
//! and removes docplane's own.
//!
//! Invariants:
//! - docplane's own current-op reads never leave this module: each one carries a fresh random
//!   [`OwnOpTag`] (`comment: "docplane:<128-bit hex>"` on the aggregate, a no-op `$comment`
//!   predicate on the `currentOp` command), registered while the read runs, and exactly the
//!   entries whose command carries a registered tag are dropped ([`is_own_operation`]);
//! - the application name alone never hides an *active* operation: a client that merely calls
//!   itself `docplane-control` is listed and can be killed like any other. Only entries under the
//!   driver's `app_name` that cannot matter are hidden: idle connections (nothing to kill) and the
//!   driver's monitoring `hello` / `isMaster` (awaitable heartbeats).

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};

use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};

use crate::config::NodeTarget;
use crate::error::Result;
use crate::info::ServerVersion;
use crate::transport::NodeTransport;

/// `batchSize` of the `$currentOp` aggregation: one batch holds any realistic node's operations.
pub const CURRENT_OP_BATCH: i32 = 100_000;

/// Prefix of every [`OwnOpTag`] comment.
pub const OWN_TAG_PREFIX: &str = "docplane:";

/// Tags of the current-op reads running in this process right now.
static LIVE_TAGS: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

fn live_tags() -> std::sync::MutexGuard<'static, HashSet<String>> {
    LIVE_TAGS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The mark of one current-op read of docplane's: a fresh random comment, registered as live
/// from creation until drop. Keep it alive until the read's entries have been filtered.
#[derive(Debug)]
pub struct OwnOpTag {
    comment: String,
}

impl OwnOpTag {
    /// A fresh tag (`docplane:` + 128 random bits in hex), registered as live.
    #[allow(clippy::new_without_default, reason = "each call makes a distinct random tag")]
    pub fn new() -> Self {
        let comment = format!("{OWN_TAG_PREFIX}{:032x}", rand::random::<u128>());
        live_tags().insert(comment.clone());
        Self { comment }
    }

    /// The comment text.
    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// Marks a current-op request with this tag (see [`tag_request`]).
    pub fn tag(&self, request: &mut Document) {
        tag_request(request, &self.comment);
    }
}

impl Drop for OwnOpTag {
    fn drop(&mut self) {
        live_tags().remove(&self.comment);
    }
}

/// Marks a current-op request with `comment`: the `comment` option on an `aggregate` (3.6+,
/// recorded in the op's `command`), a `$comment` predicate on the `currentOp` command (a no-op
/// in any filter, so it can neither hide nor add entries; the command's fields other than
/// `$all` / `$ownOps` are its filter on 3.4).
pub fn tag_request(request: &mut Document, comment: &str) {
    if request.contains_key("aggregate") {
        request.insert("comment", comment);
    } else {
        request.insert("$comment", comment);
    }
}

/// The docplane tag an entry's command carries, if any: `comment` / `$comment` of `command`
/// (3.6+), of the legacy `query` (3.4), or of a getMore's `cursor.originatingCommand`.
pub fn entry_tag(entry: &Document) -> Option<&str> {
    let commands = [
        entry.get_document("command").ok(),
        entry.get_document("query").ok(),
        entry.get_document("cursor").ok().and_then(|c| c.get_document("originatingCommand").ok()),
    ];
    commands.into_iter().flatten().find_map(|c| {
        ["comment", "$comment"]
            .into_iter()
            .filter_map(|k| c.get_str(k).ok())
            .find(|t| t.starts_with(OWN_TAG_PREFIX))
    })
}

pub fn entry_app_name(entry: &Document) -> Option<&str> {
    entry.get_str("appName").ok().or_else(|| {
        entry
            .get_document("clientMetadata")
            .ok()
            .and_then(|m| m.get_document("application").ok())
            .and_then(|a| a.get_str("name").ok())
    })
}

/// Whether an entry's command is a handshake / heartbeat (`hello`, `isMaster`).
pub fn is_hello(entry: &Document) -> bool {
    entry
        .get_document("command")
        .ok()
        .and_then(|c| c.keys().next())
        .is_some_and(|k| matches!(k.as_str(), "hello" | "isMaster" | "ismaster"))
}

/// Pure core of [`is_own_operation`] over an explicit set of live tags.
pub fn is_own_operation_with(entry: &Document, app_name: &str, live: &HashSet<String>) -> bool {
    if entry_app_name(entry) != Some(app_name) {
        return false;
    }
    let active = entry.get_bool("active").unwrap_or(false);
    !active || is_hello(entry) || entry_tag(entry).is_some_and(|t| live.contains(t))
}

/// True for entries docplane hides as its own: under docplane's `app_name` (every connection
/// of both transports announces it), a current-op read of this process (its command carries a
/// live [`OwnOpTag`]), an idle connection or a `hello` / `isMaster` heartbeat. Any other active
/// operation is the user's, whatever its application name; a live tag copied into another
/// application's command hides nothing.
pub fn is_own_operation(entry: &Document, app_name: &str) -> bool {
    let live = live_tags();
    is_own_operation_with(entry, app_name, &live)
}

/// The `$currentOp` stage options for a server version.
pub fn current_op_stage(version: ServerVersion) -> Document {
    let mut options = doc! {"allUsers": true, "idleConnections": true};
    if version.at_least(4, 0) {
        options.insert("idleSessions", true);
    }
    doc! {"$currentOp": options}
}

/// The current-op request for a version: the `$currentOp` aggregation (3.6+), with `stages`
/// after the stage, or the `currentOp` command with `$all` (3.4), whose filter is the first
/// `$match` of `stages` (3.4 takes nothing else: other stages are refused there).
pub fn current_op_request(version: ServerVersion, stages: &[Document]) -> Result<Document> {
    if version.has_current_op_stage() {
        let mut pipeline = vec![Bson::Document(current_op_stage(version))];
        pipeline.extend(stages.iter().cloned().map(Bson::Document));
        return Ok(doc! {"aggregate": 1, "pipeline": pipeline, "cursor": {"batchSize": CURRENT_OP_BATCH}});
    }
    let mut command = doc! {"currentOp": 1, "$all": true};
    match stages {
        [] => {}
        [only] => match only.get_document("$match") {
            Ok(predicate) if only.len() == 1 => command.extend(predicate.clone()),
            _ => {
                return Err(crate::DriverError::InvalidRequest(
                    "MongoDB 3.4's currentOp command takes only a filter".into(),
                ));
            }
        },
        _ => {
            return Err(crate::DriverError::InvalidRequest(
                "MongoDB 3.4's currentOp command takes only a filter".into(),
            ));
        }
    }
    Ok(command)
}

/// The `$match` predicate that [`is_own_operation`] is, for a node to apply before later stages:
/// under `app_name` (read as [`entry_app_name`] reads it), no entry carrying one of `live` (this
/// process's current-op tags, this read's among them) where [`entry_tag`] looks for it, no idle
/// connection and no `hello` / `isMaster` heartbeat. The application name comes first, in each of
/// its two spellings, so that a user's entry costs the node two field reads, not a dozen.
/// Operators are all MongoDB 3.6's (`$expr` in `$match`, `$objectToArray`). (A read that starts
/// after the tags were taken can still be counted by the node; the entries are filtered again
/// when they arrive.)
pub fn own_exclusion(live: &[String], app_name: &str) -> Document {
    let mut kinds = Vec::new();
    for carrier in ["command", "query", "cursor.originatingCommand"] {
        for field in ["comment", "$comment"] {
            kinds.push(Bson::Document(doc! {format!("{carrier}.{field}"): {"$in": live.to_vec()}}));
        }
    }
    kinds.push(Bson::Document(doc! {"active": {"$ne": true}}));
    // `is_hello`: the command's first field names a handshake ($objectToArray: 3.4.4).
    let first_field = doc! {"$cond": [
        {"$eq": [{"$type": "$command"}, "object"]},
        {"$arrayElemAt": [{"$map": {"input": {"$objectToArray": "$command"}, "as": "f", "in": "$$f.k"}}, 0]},
        Bson::Null,
    ]};
    kinds.push(Bson::Document(doc! {"$expr": {"$in": [first_field, ["hello", "isMaster", "ismaster"]]}}));
    // `entry_app_name`: `appName` when it is a string, else the client metadata's.
    let under_app = [
        doc! {"appName": app_name},
        doc! {"appName": {"$not": {"$type": "string"}}, "clientMetadata.application.name": app_name},
    ];
    let own: Vec<Bson> = under_app
        .into_iter()
        .map(|mut app| {
            app.insert("$or", kinds.clone());
            Bson::Document(app)
        })
        .collect();
    doc! {"$nor": own}
}

/// Raw current-operation entries of a node (docplane's own removed), optionally restricted by a
/// predicate on the entries (pushed down to the node).
pub async fn current_op_entries(
    t: &dyn NodeTransport,
    target: &NodeTarget,
    predicate: Option<Document>,
) -> Result<Vec<Document>> {
    let stages: Vec<Document> = predicate.into_iter().map(|p| doc! {"$match": p}).collect();
    current_op_pipeline(t, target, &stages).await
}

/// Raw entries of `$currentOp` followed by `stages` (on 3.4, at most one `$match`), docplane's
/// own removed. On 3.6+, when a stage follows the leading `$match` stages, [`own_exclusion`] runs
/// on the node after them (cheap filters first: an opid filter narrows the entries before the
/// exclusion's `$expr`) and before the rest, so a stage that counts, sorts or pages never sees
/// docplane's own entries. Selecting stages alone need no exclusion on the node: the entries are
/// filtered here in any case.
pub async fn current_op_pipeline(
    t: &dyn NodeTransport,
    target: &NodeTarget,
    stages: &[Document],
) -> Result<Vec<Document>> {
    // The tag lives until the entries are filtered below.
    let (_, tag, request) = tagged_request(t, target, stages).await?;
    let app_name = &t.config().app_name;
    let entries = if request.contains_key("aggregate") {
        t.cursor_command(target, "admin", request).await?
    } else {
        let reply = t.command(target, "admin", request).await?;
        reply
            .get_array("inprog")
            .map(|a| a.iter().filter_map(Bson::as_document).cloned().collect())
            .unwrap_or_default()
    };
    let own = entries.into_iter().filter(|e| !is_own_operation(e, app_name)).collect();
    drop(tag);
    Ok(own)
}

/// [`current_op_pipeline`] for stages that reshape the entries into documents of their own (the
/// pushed-down listing's one `{total, page}` document), MongoDB 3.6+: the reply as the node
/// encoded it, for a caller that reads a few fields of it. [`own_exclusion`] ran on the node; the
/// caller drops what [`is_own_operation`] names among the entries it takes out.
pub async fn current_op_pipeline_raw(
    t: &dyn NodeTransport,
    target: &NodeTarget,
    stages: &[Document],
) -> Result<Vec<RawDocumentBuf>> {
    let (version, tag, request) = tagged_request(t, target, stages).await?;
    if !version.has_current_op_stage() {
        return Err(crate::DriverError::InvalidRequest(
            "a reshaping $currentOp pipeline needs MongoDB 3.6 or later".into(),
        ));
    }
    let reply = t.cursor_command_raw(target, "admin", request).await;
    drop(tag);
    reply
}

/// The node's version (refused when docplane cannot manage it), a fresh tag for this read (live
/// until dropped, and taken by the request's exclusion) and the tagged request for `stages`.
async fn tagged_request(
    t: &dyn NodeTransport,
    target: &NodeTarget,
    stages: &[Document],
) -> Result<(ServerVersion, OwnOpTag, Document)> {
    let version = t.version(target).await?;
    version.check_supported()?;
    let tag = OwnOpTag::new();
    let mut request = pipeline_request(version, stages, &t.config().app_name)?;
    tag.tag(&mut request);
    Ok((version, tag, request))
}

/// The request of [`current_op_pipeline`]: the caller's leading `$match`es right after the stage
/// (the node applies the first one to its registry: an opid filter at once), then, when a stage
/// that counts, sorts or pages follows, [`own_exclusion`] before it. Only selecting stages: every
/// entry arrives as the node built it and the exact client-side filter removes docplane's own, so
/// the node need not evaluate the exclusion (the kill's candidate read: about half the node's work
/// for it).
fn pipeline_request(version: ServerVersion, stages: &[Document], app_name: &str) -> Result<Document> {
    let leading = stages.iter().take_while(|st| st.len() == 1 && st.contains_key("$match")).count();
    if leading == stages.len() || !version.has_current_op_stage() {
        return current_op_request(version, stages);
    }
    let live: Vec<String> = live_tags().iter().cloned().collect();
    let mut with_exclusion = Vec::with_capacity(stages.len() + 1);
    with_exclusion.extend(stages[..leading].iter().cloned());
    with_exclusion.push(doc! {"$match": own_exclusion(&live, app_name)});
    with_exclusion.extend(stages[leading..].iter().cloned());
    current_op_request(version, &with_exclusion)
}

/// `{killOp: 1, op}` on `admin`: `op` an integer on mongod, the `"shard:opid"` string on
/// mongos. Only marks the operation; it ends at its next interrupt point.
pub async fn kill_op(t: &dyn NodeTransport, target: &NodeTarget, op: Bson) -> Result<()> {
    t.command(target, "admin", doc! {"killOp": 1, "op": op}).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sleep_entry() -> Document {
        doc! {
            "type": "op", "host": "node1:27017", "desc": "conn7", "connectionId": 7,
            "client": "127.0.0.1:50000", "appName": "tester", "active": true,
            "opid": 42_i32, "secs_running": 1_i64, "microsecs_running": 1_500_000_i64,
            "op": "command", "ns": "admin.$cmd",
            "command": {"sleep": 1, "millis": 5000_i64, "$db": "admin"},
            "planSummary": "", "effectiveUsers": [{"user": "alice", "db": "admin"}],
        }
    }

    #[test]
    fn own_operations_are_recognized_by_live_tag_only() {
        let app = "docplane-control";
        let live: HashSet<String> = ["docplane:00ff".to_owned()].into();
        let own = |e: &Document| is_own_operation_with(e, app, &live);
        // Tagged reads: the aggregate (3.6+), the currentOp command (3.4's `query`), a getMore.
        let agg = doc! {"active": true, "opid": 1, "appName": app,
        "command": {"aggregate": 1, "pipeline": [{"$currentOp": {}}], "comment": "docplane:00ff"}};
        assert!(own(&agg));
        assert!(own(&doc! {"active": true, "opid": 2, "appName": app,
        "query": {"currentOp": 1, "$all": true, "$comment": "docplane:00ff"}}));
        assert!(own(&doc! {"active": true, "opid": 3, "clientMetadata": {"application": {"name": app}},
        "command": {"getMore": 5_i64}, "cursor": {"originatingCommand": {"aggregate": 1, "comment": "docplane:00ff"}}}));
        // A live tag copied into another application's command (or one without a name) hides
        // nothing: only docplane's connections carry its reads.
        let mut copied = agg.clone();
        copied.insert("appName", "shop");
        assert!(!own(&copied));
        copied.remove("appName");
        assert!(!own(&copied));
        // A tag that is not live (guessed, or of a finished read) hides nothing.
        let stale = doc! {"active": true, "opid": 4,
        "command": {"aggregate": 1, "pipeline": [{"$currentOp": {}}], "comment": "docplane:0bad"}};
        assert!(!own(&stale));
        // An untagged $currentOp / currentOp is someone else's.
        assert!(!own(
            &doc! {"active": true, "opid": 5, "command": {"aggregate": 1, "pipeline": [{"$currentOp": {}}]}}
        ));
        assert!(!own(&doc! {"active": true, "opid": 6, "command": {"currentOp": 1}}));
        // The app name alone: idle connections and heartbeats hidden, active work listed.
        assert!(own(&doc! {"active": false, "desc": "conn3", "appName": app}));
        assert!(own(
            &doc! {"active": false, "desc": "conn4", "clientMetadata": {"application": {"name": app}}}
        ));
        assert!(own(
            &doc! {"active": true, "opid": 7, "appName": app, "command": {"hello": 1, "maxAwaitTimeMS": 10_000}}
        ));
        assert!(own(&doc! {"active": true, "opid": 8, "appName": app, "command": {"isMaster": 1}}));
        let mut impostor = sleep_entry();
        impostor.insert("appName", app);
        assert!(!own(&impostor));
        let mut impostor = sleep_entry();
        impostor.remove("appName");
        impostor.insert("clientMetadata", doc! {"application": {"name": app}});
        assert!(!own(&impostor));
        assert!(!own(&sleep_entry()));
        assert!(!own(&doc! {"active": false, "desc": "conn9", "appName": "other"}));
    }

    #[test]
    fn tags_are_fresh_live_while_held_and_land_in_the_request() {
        let (a, b) = (OwnOpTag::new(), OwnOpTag::new());
        assert_ne!(a.comment(), b.comment());
        assert!(a.comment().starts_with(OWN_TAG_PREFIX) && a.comment().len() == OWN_TAG_PREFIX.len() + 32);
        let mut agg = doc! {"aggregate": 1, "pipeline": [current_op_stage(ServerVersion::new(4, 4, 0))]};
        a.tag(&mut agg);
        assert_eq!(agg.get_str("comment").unwrap(), a.comment());
        let mut cmd = doc! {"currentOp": 1, "$all": true, "opid": {"$in": [5]}};
        b.tag(&mut cmd);
        assert_eq!(cmd.get_str("$comment").unwrap(), b.comment());
        assert!(!cmd.contains_key("comment"));
        let entry = doc! {"active": true, "opid": 1, "appName": "docplane-control", "command": agg};
        assert_eq!(entry_tag(&entry), Some(a.comment()));
        assert!(is_own_operation(&entry, "docplane-control"));
        drop(a);
        assert!(!is_own_operation(&entry, "docplane-control"), "a dropped tag hides nothing");
        assert!(is_own_operation(&doc! {"active": true, "opid": 2, "appName": "x", "query": cmd}, "x"));
    }

    #[test]
    fn stage_options_follow_version() {
        let s = current_op_stage(ServerVersion::new(3, 6, 0));
        let o = s.get_document("$currentOp").unwrap();
        assert!(o.get_bool("allUsers").unwrap() && o.get_bool("idleConnections").unwrap());
        assert!(!o.contains_key("idleSessions"));
        let s = current_op_stage(ServerVersion::new(4, 4, 0));
        assert!(s.get_document("$currentOp").unwrap().get_bool("idleSessions").unwrap());
    }

    #[test]
    fn requests_follow_version() {
        let pred = doc! {"$match": {"opid": {"$in": [5]}}};
        let old = current_op_request(ServerVersion::new(3, 4, 24), std::slice::from_ref(&pred)).unwrap();
        assert_eq!(old, doc! {"currentOp": 1, "$all": true, "opid": {"$in": [5]}});
        let sort = doc! {"$sort": {"opid": 1}};
        assert!(current_op_request(ServerVersion::new(3, 4, 24), std::slice::from_ref(&sort)).is_err());
        assert!(current_op_request(ServerVersion::new(3, 4, 24), &[pred.clone(), pred.clone()]).is_err());
        let new = current_op_request(ServerVersion::new(3, 6, 0), &[doc! {"$match": {"opid": 5}}]).unwrap();
        assert_eq!(new.get_i32("aggregate").unwrap(), 1);
        let pipeline = new.get_array("pipeline").unwrap();
        assert_eq!(pipeline.len(), 2);
        let stage = pipeline[0].as_document().unwrap().get_document("$currentOp").unwrap();
        assert!(stage.get_bool("allUsers").unwrap() && !stage.contains_key("idleSessions"));
        assert_eq!(pipeline[1].as_document().unwrap(), &doc! {"$match": {"opid": 5}});
        let bare = current_op_request(ServerVersion::new(4, 2, 0), &[]).unwrap();
        assert_eq!(bare.get_array("pipeline").unwrap().len(), 1);
    }

    /// [`own_exclusion`] (what the node applies before pushed-down stages) keeps exactly what
    /// [`is_own_operation_with`] keeps, on every shape of entry the recognizer is tested with.
    #[test]
    fn own_exclusion_matches_the_recognizer() {
        let app = "docplane-control";
        let tag = "docplane:00ff";
        let live: HashSet<String> = [tag.to_owned()].into();
        let filter = docplane_query::Filter::parse(&own_exclusion(&[tag.to_owned()], app)).unwrap();
        let mut impostor = sleep_entry();
        impostor.insert("appName", app);
        let entries = [
            doc! {"active": true, "opid": 1, "appName": app, "command": {"aggregate": 1, "comment": tag}},
            doc! {"active": false, "desc": "conn3", "appName": app},
            doc! {"desc": "conn5", "appName": app},
            doc! {"active": true, "opid": 2, "query": {"currentOp": 1, "$comment": tag}},
            doc! {"active": true, "opid": 3, "command": {"getMore": 5_i64}, "cursor": {"originatingCommand": {"aggregate": 1, "comment": tag}}},
            doc! {"active": false, "desc": "conn4", "clientMetadata": {"application": {"name": app}}},
            doc! {"active": true, "opid": 7, "appName": app, "command": {"hello": 1, "maxAwaitTimeMS": 10_000}},
            doc! {"active": true, "opid": 8, "appName": app, "command": {"isMaster": 1}},
            doc! {"active": true, "opid": 9, "clientMetadata": {"application": {"name": app}}, "command": {"ismaster": 1}},
            doc! {"active": true, "opid": 4, "command": {"aggregate": 1, "comment": "docplane:0bad"}},
            doc! {"active": false, "desc": "conn9", "appName": "other"},
            impostor,
            sleep_entry(),
        ];
        for e in &entries {
            let kept = filter.matches(e);
            assert_eq!(kept, !is_own_operation_with(e, app, &live), "{e}");
        }
    }
}
