//! The sessions service: list a node's sessions with filters and paging, and kill sessions
//! safely. HTTP-free; the API layer maps its inputs and errors to the vendor's shapes.
//!
//! Kill invariants:
//! - ids are validated as a whole first ([`parse_session_ids`]): 1..=1000 ids, each a decimal
//!   opid on mongod or `"<shard>:<opid>"` on mongos (or the `connN` / `lsid:<uuid>` ids docplane
//!   gives idle entries that have no opid, accepted only to be refused as inactive); duplicates
//!   collapse;
//! - every id is then checked against the node's current operations; if any is unknown or
//!   inactive the whole request is refused naming them and **nothing is killed**;
//! - otherwise `killOp` is issued for each id and the outcome of each is verified by polling
//!   `currentOp` for a bounded time ([`DriverConfig::kill_verify_timeout`]).
//!
//! [`DriverConfig::kill_verify_timeout`]: crate::DriverConfig::kill_verify_timeout

use std::collections::HashSet;
use std::time::Instant;

use futures::StreamExt;
use mongodb::bson::Bson;

use crate::config::{NodeKind, NodeTarget};
use crate::error::{DriverError, Result};
use crate::ops::{SessionRecord, is_connection_desc, is_idle_session_id};
use crate::pool::Driver;

/// Most session ids one kill request may carry.
pub const MAX_KILL_IDS: usize = 1000;

/// The operation types the vendor API accepts as a `type` filter.
pub const OP_TYPES: &[&str] =
    &["none", "update", "insert", "query", "command", "getmore", "remove", "killcursors"];

/// The plan-summary stage names the vendor API accepts as a `plan_summary` filter.
pub const PLAN_SUMMARIES: &[&str] = &[
    "COLLSCAN",
    "IXSCAN",
    "FETCH",
    "SORT",
    "LIMIT",
    "SKIP",
    "COUNT",
    "COUNT_SCAN",
    "TEXT",
    "PROJECTION",
    "IDHACK",
    "EOF",
    "DISTINCT_SCAN",
    "SORT_KEY_GENERATOR",
    "SHARDING_FILTER",
    "SUBPLAN",
    "OR",
    "AND_HASH",
    "AND_SORTED",
    "GEO_NEAR_2D",
    "GEO_NEAR_2DSPHERE",
    "EXPRESS_IXSCAN",
    "EXPRESS_CLUSTERED_IXSCAN",
    "CLUSTERED_IXSCAN",
];

/// A validated session id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionId {
    /// A mongod opid.
    Local(i64),
    /// A mongos id: shard name and the opid on that shard.
    Shard {
        /// Shard name.
        shard: String,
        /// Opid on the shard.
        opid: i64,
    },
    /// An entry without an opid as docplane lists it: an idle connection (`conn12`) or an idle
    /// session (`lsid:<uuid>`). Never killable; accepted only so that a request naming one is
    /// refused as inactive rather than as malformed.
    Idle(String),
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionId::Local(n) => write!(f, "{n}"),
            SessionId::Shard { shard, opid } => write!(f, "{shard}:{opid}"),
            SessionId::Idle(text) => f.write_str(text),
        }
    }
}

/// Parses a decimal opid: optional `-`, 1..=10 digits, within MongoDB's 32-bit opid space
/// (signed or unsigned reading).
fn parse_opid(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = text.parse().ok()?;
    (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&n).then_some(n)
}

fn valid_shard_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| !c.is_control() && !c.is_whitespace() && c != ':')
}

impl SessionId {
    /// Parses one id for a node of `kind`.
    pub fn parse(text: &str, kind: NodeKind) -> Option<Self> {
        if is_connection_desc(text) || is_idle_session_id(text) {
            return Some(SessionId::Idle(text.to_owned()));
        }
        match kind {
            NodeKind::Mongod => parse_opid(text).map(SessionId::Local),
            NodeKind::Mongos => {
                let (shard, opid) = text.split_once(':')?;
                if !valid_shard_name(shard) {
                    return None;
                }
                Some(SessionId::Shard { shard: shard.to_owned(), opid: parse_opid(opid)? })
            }
        }
    }

    /// The node kind this id belongs to (`None` for idle ids, valid on both).
    pub fn kind(&self) -> Option<NodeKind> {
        match self {
            SessionId::Local(_) => Some(NodeKind::Mongod),
            SessionId::Shard { .. } => Some(NodeKind::Mongos),
            SessionId::Idle(_) => None,
        }
    }

    /// The value of `killOp`'s `op` and of `currentOp`'s `opid`: Int32 when it fits (Int64
    /// otherwise) on mongod; the `"shard:opid"` string on mongos; `None` for idle ids.
    pub fn op_value(&self) -> Option<Bson> {
        match self {
            SessionId::Local(n) => Some(match i32::try_from(*n) {
                Ok(small) => Bson::Int32(small),
                Err(_) => Bson::Int64(*n),
            }),
            SessionId::Shard { .. } => Some(Bson::String(self.to_string())),
            SessionId::Idle(_) => None,
        }
    }
}

/// Validates a kill request's id list: non-empty, at most [`MAX_KILL_IDS`], every id
/// well-formed for `kind` (all malformed ones are named). Duplicates collapse, first order kept.
pub fn parse_session_ids(raw: &[String], kind: NodeKind) -> Result<Vec<SessionId>> {
    if raw.is_empty() {
        return Err(DriverError::InvalidRequest("sessions must contain at least one id".into()));
    }
    if raw.len() > MAX_KILL_IDS {
        return Err(DriverError::InvalidRequest(format!(
            "sessions may contain at most {MAX_KILL_IDS} ids, got {}",
            raw.len()
        )));
    }
    let mut invalid = Vec::new();
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    for text in raw {
        match SessionId::parse(text, kind) {
            Some(id) => {
                if seen.insert(id.clone()) {
                    ids.push(id);
                }
            }
            None => {
                if !invalid.contains(text) {
                    invalid.push(text.clone());
                }
            }
        }
    }
    if invalid.is_empty() { Ok(ids) } else { Err(DriverError::InvalidSessionIds(invalid)) }
}

/// True for a vendor `type` filter value.
pub fn is_valid_op_type(value: &str) -> bool {
    OP_TYPES.contains(&value)
}

/// True for a vendor `plan_summary` filter value (one stage name, case-insensitive).
pub fn is_valid_plan_summary(value: &str) -> bool {
    PLAN_SUMMARIES.iter().any(|p| p.eq_ignore_ascii_case(value.trim()))
}

/// True for a `db.collection` namespace: a database name without `/\. "$` and a non-empty
/// collection name, no control characters, at most 255 bytes.
pub fn is_valid_namespace(value: &str) -> bool {
    let Some((db, coll)) = value.split_once('.') else {
        return false;
    };
    value.len() <= 255
        && !db.is_empty()
        && db.len() <= 64
        && !db.contains(['/', '\\', ' ', '"', '$', '\0'])
        && !coll.is_empty()
        && !value.chars().any(char::is_control)
}

/// Filters of the list API; `None` means "no filter".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// A plan stage name that must appear in the operation's plan summary.
    pub plan_summary: Option<String>,
    /// Exact operation type.
    pub op_type: Option<String>,
    /// Exact namespace.
    pub namespace: Option<String>,
    /// Only operations running longer than this many microseconds.
    pub min_cost_time_us: Option<u64>,
}

fn plan_has_stage(summary: &str, stage: &str) -> bool {
    summary
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| word.eq_ignore_ascii_case(stage))
}

impl SessionFilter {
    /// Whether `record` passes every filter that is set.
    pub fn matches(&self, record: &SessionRecord) -> bool {
        self.plan_summary.as_deref().is_none_or(|p| plan_has_stage(&record.plan_summary, p.trim()))
            && self.op_type.as_deref().is_none_or(|t| record.op_type == t)
            && self.namespace.as_deref().is_none_or(|n| record.namespace == n)
            && self.min_cost_time_us.is_none_or(|min| record.cost_time_us > min)
    }
}

/// A list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionQuery {
    /// Filters.
    pub filter: SessionFilter,
    /// Records to skip.
    pub offset: u64,
    /// Records to return at most.
    pub limit: u64,
}

impl Default for SessionQuery {
    fn default() -> Self {
        Self { filter: SessionFilter::default(), offset: 0, limit: 10 }
    }
}

/// One page of sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPage {
    /// Matching records before paging.
    pub total: u64,
    /// The page.
    pub sessions: Vec<SessionRecord>,
}

fn id_order(a: &SessionRecord, b: &SessionRecord) -> std::cmp::Ordering {
    match (a.id.parse::<i64>(), b.id.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.id.cmp(&b.id),
    }
}

/// Filters, orders by cost time descending (then id ascending, for stable paging) and pages;
/// returns the number of matching records and the indices of the page's records.
pub fn select_indices(records: &[SessionRecord], query: &SessionQuery) -> (u64, Vec<usize>) {
    let mut matching: Vec<usize> =
        (0..records.len()).filter(|&i| query.filter.matches(&records[i])).collect();
    matching.sort_by(|&a, &b| {
        let (a, b) = (&records[a], &records[b]);
        b.cost_time_us.cmp(&a.cost_time_us).then_with(|| id_order(a, b))
    });
    let total = matching.len() as u64;
    let offset = usize::try_from(query.offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    (total, matching.into_iter().skip(offset).take(limit).collect())
}

/// [`select_indices`] over owned records.
pub fn select(records: Vec<SessionRecord>, query: &SessionQuery) -> SessionPage {
    let (total, page) = select_indices(&records, query);
    let mut slots: Vec<Option<SessionRecord>> = records.into_iter().map(Some).collect();
    let sessions = page.into_iter().filter_map(|i| slots.get_mut(i).and_then(Option::take)).collect();
    SessionPage { total, sessions }
}

/// Checks the requested ids against the node's current operations. Unknown ids are refused
/// first (`InvalidSessionIds`), then inactive ones (`InactiveSessions`).
pub fn check_killable(ids: &[SessionId], current: &[SessionRecord]) -> Result<()> {
    let mut unknown = Vec::new();
    let mut inactive = Vec::new();
    for id in ids {
        let text = id.to_string();
        match current.iter().find(|r| r.id == text) {
            None => unknown.push(text),
            Some(r) if !r.active || !r.has_opid => inactive.push(text),
            Some(_) => {}
        }
    }
    if !unknown.is_empty() {
        return Err(DriverError::InvalidSessionIds(unknown));
    }
    if !inactive.is_empty() {
        return Err(DriverError::InactiveSessions(inactive));
    }
    Ok(())
}

/// What happened to one id of a kill request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum KillStatus {
    /// killOp accepted and the operation is gone from `currentOp`.
    Killed,
    /// killOp accepted but the operation was still listed at the verification deadline (it
    /// stays marked `killPending` on the node).
    StillRunning,
    /// killOp accepted but the node could not be read afterwards: nothing is known.
    Unknown,
    /// killOp itself failed.
    Failed {
        /// Error code (0 for non-server failures).
        code: i32,
        /// Message.
        message: String,
    },
}

/// Per-id outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KillOutcome {
    /// The canonical id.
    pub id: String,
    /// Outcome.
    #[serde(flatten)]
    pub status: KillStatus,
}

/// The outcome of a kill request, in request order (duplicates collapsed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KillReport {
    /// One entry per distinct id.
    pub outcomes: Vec<KillOutcome>,
}

impl KillReport {
    /// True when every killOp was accepted (whether or not the op had ended yet).
    pub fn all_issued(&self) -> bool {
        self.outcomes.iter().all(|o| !matches!(o.status, KillStatus::Failed { .. }))
    }

    /// Ids whose killOp failed.
    pub fn failed_ids(&self) -> Vec<String> {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.status, KillStatus::Failed { .. }))
            .map(|o| o.id.clone())
            .collect()
    }
}

/// Concurrent killOps per request.
const KILL_CONCURRENCY: usize = 16;

/// Lists a node's sessions per `query`.
pub async fn list(driver: &Driver, target: &NodeTarget, query: &SessionQuery) -> Result<SessionPage> {
    let entries = driver.current_op_entries(target, None).await?;
    let (records, sources): (Vec<SessionRecord>, Vec<usize>) =
        entries.iter().enumerate().filter_map(|(i, e)| SessionRecord::summary(e).map(|r| (r, i))).unzip();
    let (total, page) = select_indices(&records, query);
    let sessions = page
        .into_iter()
        .map(|k| {
            let mut r = records[k].clone();
            r.operation = crate::ops::operation_text(&entries[sources[k]]);
            r
        })
        .collect();
    Ok(SessionPage { total, sessions })
}

/// What one operation was when a kill was asked for: the snapshot a kill record keeps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KillTarget {
    /// The canonical id.
    pub id: String,
    /// `op`.
    pub op_type: String,
    /// `ns`.
    pub namespace: String,
    /// `client` (`client_s` on mongos).
    pub client: String,
    /// `effectiveUsers[0].user`.
    pub user: Option<String>,
    /// The client's `appName`.
    pub app_name: Option<String>,
    /// `microsecs_running` when it was read.
    pub running_us: u64,
    /// `planSummary`.
    pub plan_summary: String,
    /// The command as relaxed extended JSON, secrets replaced by `"xxx"`, cut at
    /// [`MAX_SNAPSHOT_COMMAND`] bytes.
    pub command: String,
}

/// Longest command text a [`KillTarget`] keeps.
pub const MAX_SNAPSHOT_COMMAND: usize = 4096;

/// A kill that passed validation and the all-or-nothing check: the ids to kill, with the
/// snapshot of each, and nothing sent to the node yet.
#[derive(Debug, Clone)]
pub struct PreparedKill {
    /// Distinct ids, in request order.
    pub ids: Vec<SessionId>,
    /// One snapshot per id, same order.
    pub targets: Vec<KillTarget>,
}

/// Validates and checks a kill without killing anything: parses the ids, reads the node's
/// current operations for them, refuses unknown or inactive ones, and snapshots the rest.
pub async fn prepare_kill(driver: &Driver, target: &NodeTarget, raw_ids: &[String]) -> Result<PreparedKill> {
    let ids = parse_session_ids(raw_ids, target.kind)?;
    let entries = if ids.iter().any(|id| matches!(id, SessionId::Idle(_))) {
        // Idle entries have no opid to filter on; they are refused below anyway.
        driver.current_op_entries(target, None).await?
    } else {
        driver.current_op_entries(target, Some(crate::ops::opid_predicate(&ids))).await?
    };
    let current: Vec<SessionRecord> = entries.iter().filter_map(SessionRecord::summary).collect();
    check_killable(&ids, &current)?;
    let targets = ids
        .iter()
        .map(|id| {
            let text = id.to_string();
            let entry = entries.iter().zip(&current).find(|(_, r)| r.id == text);
            match entry {
                Some((e, r)) => crate::ops::kill_target(&text, e, r),
                // Unreachable after check_killable; an empty snapshot rather than a panic.
                None => KillTarget {
                    id: text,
                    op_type: String::new(),
                    namespace: String::new(),
                    client: String::new(),
                    user: None,
                    app_name: None,
                    running_us: 0,
                    plan_summary: String::new(),
                    command: "{}".into(),
                },
            }
        })
        .collect();
    Ok(PreparedKill { ids, targets })
}

/// Sends killOp for every prepared id; returns each id with its killOp result. A node that
/// vanished (every killOp failed on connectivity) is reported as unreachable.
pub async fn send_kills(
    driver: &Driver,
    target: &NodeTarget,
    ids: &[SessionId],
) -> Result<Vec<(SessionId, Result<()>)>> {
    let results: Vec<(SessionId, Result<()>)> = futures::stream::iter(ids.iter().cloned())
        .map(|id| async move {
            let r = driver.kill_op(target, &id).await;
            (id, r)
        })
        .buffered(KILL_CONCURRENCY)
        .collect()
        .await;
    if let Some(err) = results.iter().find_map(|(_, r)| r.as_ref().err().filter(|e| e.is_connectivity()))
        && results.iter().all(|(_, r)| r.is_err())
    {
        return Err(err.clone());
    }
    Ok(results)
}

/// Validates, checks and issues the kill without verifying: returns the parsed ids with the
/// killOp result of each. Refuses (killing nothing) on malformed, unknown or inactive ids.
pub async fn issue_kill(
    driver: &Driver,
    target: &NodeTarget,
    raw_ids: &[String],
) -> Result<Vec<(SessionId, Result<()>)>> {
    let prepared = prepare_kill(driver, target, raw_ids).await?;
    send_kills(driver, target, &prepared.ids).await
}

/// Polls `currentOp` for just `ids` until none is listed or the verify deadline
/// ([`crate::DriverConfig::kill_verify_timeout`]) passes; returns the ids still listed at the end.
///
/// The first poll is immediate (a prompt operation is often gone already); after that the pause
/// doubles from 1 ms up to [`crate::DriverConfig::kill_verify_interval`], so an operation that ends
/// is seen at most one round trip plus a short pause later. The last poll is at the deadline.
pub async fn verify_gone(driver: &Driver, target: &NodeTarget, ids: &[SessionId]) -> Result<Vec<String>> {
    let config = driver.config();
    let deadline = Instant::now() + config.kill_verify_timeout;
    let mut pending: Vec<SessionId> = ids.to_vec();
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let listed = driver.ops_matching(target, &pending).await?;
        pending.retain(|id| {
            let text = id.to_string();
            listed.iter().any(|r| r.id == text)
        });
        let now = Instant::now();
        if pending.is_empty() || now >= deadline {
            return Ok(pending.iter().map(ToString::to_string).collect());
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(config.kill_verify_interval.max(std::time::Duration::from_millis(1)));
    }
}

/// Verifies the ids whose killOp was accepted and builds the per-id report (request order).
pub async fn verify_report(
    driver: &Driver,
    target: &NodeTarget,
    issued: Vec<(SessionId, Result<()>)>,
) -> KillReport {
    let accepted: Vec<SessionId> =
        issued.iter().filter(|(_, r)| r.is_ok()).map(|(id, _)| id.clone()).collect();
    // `None`: the node could not be read after killOp, so nothing is known about any id.
    let still = match verify_gone(driver, target, &accepted).await {
        Ok(still) => Some(still),
        Err(e) => {
            tracing::warn!(node = %target.id, error = %e, "kill verification could not read the node");
            None
        }
    };
    let outcomes = issued
        .into_iter()
        .map(|(id, r)| {
            let id = id.to_string();
            let status = match r {
                Err(e) => {
                    let (code, message) = match e {
                        DriverError::CommandFailed { code, message } => (code, message),
                        other => (0, other.to_string()),
                    };
                    KillStatus::Failed { code, message }
                }
                Ok(()) => match &still {
                    None => KillStatus::Unknown,
                    Some(still) if still.contains(&id) => KillStatus::StillRunning,
                    Some(_) => KillStatus::Killed,
                },
            };
            KillOutcome { id, status }
        })
        .collect();
    KillReport { outcomes }
}

/// Kills sessions: validate, check (all-or-nothing refusal), killOp each, verify each.
pub async fn kill(driver: &Driver, target: &NodeTarget, raw_ids: &[String]) -> Result<KillReport> {
    let issued = issue_kill(driver, target, raw_ids).await?;
    Ok(verify_report(driver, target, issued).await)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(id: &str, active: bool, cost: u64, op: &str, ns: &str, plan: &str) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            active,
            operation: "{}".into(),
            op_type: op.into(),
            cost_time_us: cost,
            plan_summary: plan.into(),
            host: "h:1".into(),
            client: "c:2".into(),
            description: "conn1".into(),
            namespace: ns.into(),
            db: ns.split('.').next().map(str::to_owned),
            user: None,
            has_opid: true,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn mongod_ids() {
        let ids =
            parse_session_ids(&strings(&["34631", "34703", "34631", "0034703"]), NodeKind::Mongod).unwrap();
        assert_eq!(ids, vec![SessionId::Local(34631), SessionId::Local(34703)]);
        assert_eq!(ids[0].op_value(), Some(Bson::Int32(34631)));
        assert_eq!(SessionId::Local(3_000_000_000).op_value(), Some(Bson::Int64(3_000_000_000)));
        let idle = parse_session_ids(
            &strings(&["conn12", "lsid:00010203-0405-0607-0809-0a0b0c0d0e0f"]),
            NodeKind::Mongod,
        )
        .unwrap();
        assert_eq!(idle[0], SessionId::Idle("conn12".into()));
        assert_eq!(idle[1].op_value(), None);
        assert_eq!(idle[1].kind(), None);
        let err = parse_session_ids(
            &strings(&["1", "abc", "", "1.5", "+3", "99999999999", "sh:1", "abc"]),
            NodeKind::Mongod,
        )
        .unwrap_err();
        assert_eq!(
            err,
            DriverError::InvalidSessionIds(strings(&["abc", "", "1.5", "+3", "99999999999", "sh:1"]))
        );
        assert!(SessionId::parse("-5", NodeKind::Mongod).is_some());
        assert!(SessionId::parse("4294967295", NodeKind::Mongod).is_some());
        assert!(SessionId::parse("4294967296", NodeKind::Mongod).is_none());
    }

    #[test]
    fn mongos_ids() {
        let ids =
            parse_session_ids(&strings(&["shard01:12", "shard01:12", "rs-2:7"]), NodeKind::Mongos).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0].to_string(), "shard01:12");
        assert_eq!(ids[0].op_value(), Some(Bson::String("shard01:12".into())));
        assert_eq!(ids[1].kind(), Some(NodeKind::Mongos));
        for bad in ["12", ":12", "shard01:", "a:b", "sh ard:1", "a:1:2"] {
            assert!(SessionId::parse(bad, NodeKind::Mongos).is_none(), "{bad}");
        }
    }

    #[test]
    fn id_list_bounds() {
        assert!(matches!(parse_session_ids(&[], NodeKind::Mongod), Err(DriverError::InvalidRequest(_))));
        let many: Vec<String> = (0..=MAX_KILL_IDS).map(|i| i.to_string()).collect();
        assert!(matches!(parse_session_ids(&many, NodeKind::Mongod), Err(DriverError::InvalidRequest(_))));
        assert_eq!(parse_session_ids(&many[..MAX_KILL_IDS], NodeKind::Mongod).unwrap().len(), MAX_KILL_IDS);
        // 1000 copies of one id collapse to one.
        let dup = vec!["5".to_owned(); MAX_KILL_IDS];
        assert_eq!(parse_session_ids(&dup, NodeKind::Mongod).unwrap().len(), 1);
    }

    #[test]
    fn filter_values() {
        assert!(is_valid_op_type("getmore") && !is_valid_op_type("GETMORE") && !is_valid_op_type("drop"));
        assert!(is_valid_plan_summary("COLLSCAN") && is_valid_plan_summary("ixscan"));
        assert!(!is_valid_plan_summary("TABLESCAN"));
        assert!(is_valid_namespace("shop.orders") && is_valid_namespace("a.b.c"));
        for bad in ["shop", ".orders", "shop.", "sh op.x", "a$b.c", "a/b.c"] {
            assert!(!is_valid_namespace(bad), "{bad}");
        }
    }

    #[test]
    fn filters_sort_and_page() {
        let records = vec![
            rec("1", true, 10, "query", "a.b", "COLLSCAN"),
            rec("2", true, 5_000, "command", "admin.$cmd", ""),
            rec("3", false, 0, "none", "", ""),
            rec("4", true, 900, "query", "a.b", "IXSCAN { x: 1 }"),
            rec("10", true, 900, "update", "a.c", "COLLSCAN"),
        ];
        let all = select(records.clone(), &SessionQuery { limit: 100, ..Default::default() });
        assert_eq!(all.total, 5);
        let order: Vec<&str> = all.sessions.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(order, ["2", "4", "10", "1", "3"]);

        let page = select(records.clone(), &SessionQuery { offset: 1, limit: 2, ..Default::default() });
        assert_eq!(page.total, 5);
        assert_eq!(page.sessions.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["4", "10"]);
        let beyond = select(records.clone(), &SessionQuery { offset: 50, limit: 2, ..Default::default() });
        assert_eq!((beyond.total, beyond.sessions.len()), (5, 0));

        let q =
            |f: SessionFilter| select(records.clone(), &SessionQuery { filter: f, offset: 0, limit: 100 });
        let ids = |p: SessionPage| p.sessions.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(q(SessionFilter { plan_summary: Some("COLLSCAN".into()), ..Default::default() })),
            ["10", "1"]
        );
        assert_eq!(
            ids(q(SessionFilter { plan_summary: Some("IXSCAN".into()), ..Default::default() })),
            ["4"]
        );
        assert_eq!(ids(q(SessionFilter { op_type: Some("query".into()), ..Default::default() })), ["4", "1"]);
        assert_eq!(ids(q(SessionFilter { namespace: Some("a.b".into()), ..Default::default() })), ["4", "1"]);
        assert_eq!(ids(q(SessionFilter { min_cost_time_us: Some(900), ..Default::default() })), ["2"]);
        assert_eq!(
            ids(q(SessionFilter {
                min_cost_time_us: Some(899),
                op_type: Some("update".into()),
                ..Default::default()
            })),
            ["10"]
        );
    }

    #[test]
    fn killable_check_is_all_or_nothing() {
        let current = vec![rec("1", true, 10, "query", "a.b", ""), rec("2", false, 0, "none", "", "")];
        let ids = |v: &[i64]| v.iter().map(|n| SessionId::Local(*n)).collect::<Vec<_>>();
        assert!(check_killable(&ids(&[1]), &current).is_ok());
        assert_eq!(
            check_killable(&ids(&[1, 2]), &current),
            Err(DriverError::InactiveSessions(vec!["2".into()]))
        );
        assert_eq!(
            check_killable(&ids(&[1, 7, 2]), &current),
            Err(DriverError::InvalidSessionIds(vec!["7".into()]))
        );
        let mut no_opid = rec("conn5", false, 0, "none", "", "");
        no_opid.has_opid = false;
        assert!(check_killable(&ids(&[5]), std::slice::from_ref(&no_opid)).is_err());
        assert_eq!(
            check_killable(&[SessionId::Idle("conn5".into())], &[no_opid]),
            Err(DriverError::InactiveSessions(vec!["conn5".into()]))
        );
        assert_eq!(
            check_killable(&[SessionId::Idle("conn6".into())], &current),
            Err(DriverError::InvalidSessionIds(vec!["conn6".into()]))
        );
    }

    #[test]
    fn report_helpers() {
        let r = KillReport {
            outcomes: vec![
                KillOutcome { id: "1".into(), status: KillStatus::Killed },
                KillOutcome {
                    id: "2".into(),
                    status: KillStatus::Failed { code: 13, message: "unauthorized".into() },
                },
            ],
        };
        assert!(!r.all_issued());
        assert_eq!(r.failed_ids(), vec!["2".to_owned()]);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["outcomes"][0]["status"], "killed");
        assert_eq!(json["outcomes"][1]["code"], 13);
    }
}
