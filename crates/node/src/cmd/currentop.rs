//! `currentOp`, the `$currentOp` aggregation stage's document source, and `killOp`.
//!
//! Visibility: without the `inprog` privilege a user sees only operations whose effective users equal its
//! own (`$ownOps`); `$currentOp` with `allUsers: true` then fails with 13. Idle connections are reported
//! with `idleConnections` (`$all` for the command), idle cursors with `idleCursors`. `idleSessions`
//! (`$all` for the command) reports, as on mongod, only inactive sessions holding transaction state;
//! the node has no transactions (it refuses `txnNumber`), so it never reports a `type: "idleSession"`
//! entry, however many logical sessions it has seen.
//!
//! Cost on a busy node: each op's immutable fields (connection, client metadata, users, lsid,
//! command) are built once into a template cached on the op (and the connection's fields on the
//! connection) and cloned per call; only the running times, plan summary, cursor, yields and kill
//! state are filled in each time. A predicate that follows (`$match` right after `$currentOp`, or the
//! currentOp command's own predicates) is pushed down as a [`Pushdown`]: an equality or `$in` on
//! `opid` looks those ops up by id (nothing else is visited), and the predicate is tested on an
//! [`OpView`] (the template read in place, plus just the live fields it reads), so rejected
//! entries are never built and nothing of an entry is copied to test it.
//! Results are the same, field order and types included, as building every document and filtering.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bson::{Bson, Document, doc};
use docplane_query::{CommandError, DocSource, Fields, Filter, IndexPredicate};

use super::{CmdResult, Ctx, util};
use crate::auth::{Action, UserName};
use crate::conn::ConnInfo;
use crate::ops::{KILL_INTERRUPTED, OpEntry};
use crate::state::NodeState;

/// `$currentOp` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentOpOptions {
    pub all_users: bool,
    pub idle_connections: bool,
    pub idle_sessions: bool,
    pub idle_cursors: bool,
    pub local_ops: bool,
    /// `truncateOps`: commands over 1000 bytes shown in mongod's `{$truncated: ...}` form (the
    /// `currentOp` command always; the stage only when asked).
    pub truncate_ops: bool,
}

impl Default for CurrentOpOptions {
    fn default() -> Self {
        CurrentOpOptions {
            all_users: false,
            idle_connections: false,
            idle_sessions: true,
            idle_cursors: false,
            local_ops: false,
            truncate_ops: false,
        }
    }
}

impl CurrentOpOptions {
    /// Parses the `$currentOp` stage argument.
    pub fn parse(spec: &Bson) -> Result<Self, CommandError> {
        let Bson::Document(d) = spec else {
            return Err(CommandError::failed_to_parse("$currentOp options must be specified in an object"));
        };
        let mut o = CurrentOpOptions::default();
        for (k, v) in d {
            let Bson::Boolean(b) = v else {
                return Err(CommandError::failed_to_parse(format!(
                    "The '{k}' parameter of the $currentOp stage must be a boolean value"
                )));
            };
            match k.as_str() {
                "allUsers" => o.all_users = *b,
                "idleConnections" => o.idle_connections = *b,
                "idleSessions" => o.idle_sessions = *b,
                "idleCursors" => o.idle_cursors = *b,
                "localOps" => o.local_ops = *b,
                "truncateOps" => o.truncate_ops = *b,
                // Stack traces of locks and fan-out to a cluster's nodes: nothing to show or
                // reach on a standalone, so both values give the same result.
                "backtrace" | "targetAllNodes" => {}
                other => {
                    return Err(CommandError::failed_to_parse(format!(
                        "Unrecognized option '{other}' in $currentOp stage."
                    )));
                }
            }
        }
        Ok(o)
    }
}

fn current_op_time() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string()
}

fn users_doc(users: &[UserName]) -> Vec<Bson> {
    users.iter().map(|u| Bson::Document(u.to_doc())).collect()
}

fn build_conn_prefix(host: &str, conn: &ConnInfo, meta: Option<&Document>) -> Document {
    let mut d = doc! {"type": "op"};
    d.insert("host", host);
    d.insert("desc", format!("conn{}", conn.id));
    d.insert("connectionId", i32::try_from(conn.id).unwrap_or(i32::MAX));
    d.insert("client", conn.client.to_string());
    let app = meta.and_then(|d| d.get_document("application").ok()).and_then(|a| a.get_str("name").ok());
    if let Some(app) = app {
        d.insert("appName", app);
    }
    if let Some(meta) = meta {
        d.insert("clientMetadata", meta.clone());
    }
    d
}

/// `{type: "op", host, desc, connectionId, client, appName?, clientMetadata?}` of a connection, from
/// its cache once the client metadata is known (it never changes after that).
fn conn_prefix(host: &str, conn: &ConnInfo) -> Document {
    if let Some(p) = conn.current_op_prefix.get() {
        return p.clone();
    }
    let meta = conn.metadata.lock().clone();
    let d = build_conn_prefix(host, conn, meta.as_ref());
    if meta.is_some() {
        return conn.current_op_prefix.get_or_init(|| d).clone();
    }
    d
}

/// Op-document fields whose value changes while the op runs (with the constant tail fields); every
/// other field comes from the op's cached template.
const OP_DYNAMIC_FIELDS: &[&str] = &[
    "currentOpTime",
    "secs_running",
    "microsecs_running",
    "planSummary",
    "cursor",
    "numYields",
    "locks",
    "waitingForLock",
    "lockStats",
    "killPending",
];

/// Fields after `command`, in document order.
const OP_TAIL_FIELDS: &[&str] =
    &["planSummary", "cursor", "numYields", "locks", "waitingForLock", "lockStats", "killPending"];

/// The op document up to `command`, with placeholders for `currentOpTime`, `secs_running` and
/// `microsecs_running` (set by [`op_doc_at`] in place, so field order is kept).
fn build_op_template(host: &str, op: &OpEntry) -> Document {
    let mut d = conn_prefix(host, &op.conn);
    d.insert("active", true);
    d.insert("currentOpTime", "");
    d.insert("effectiveUsers", users_doc(&op.users));
    d.insert("threaded", true);
    d.insert("opid", op.opid);
    if let Some(l) = &op.lsid {
        d.insert("lsid", l.clone());
    }
    d.insert("secs_running", 0i64);
    d.insert("microsecs_running", 0i64);
    d.insert("op", op.op);
    d.insert("ns", &op.ns);
    d.insert("redacted", false);
    d.insert("command", (*op.command).clone());
    d
}

/// Runs `f` on the op's template: the cached one, or a fresh one that is cached when the connection's
/// prefix is final (client metadata known).
fn with_template<R>(host: &str, op: &OpEntry, f: impl FnOnce(&Document) -> R) -> R {
    if let Some(t) = op.current_op_template.get() {
        return f(t);
    }
    let t = build_op_template(host, op);
    if op.conn.current_op_prefix.get().is_some() {
        f(op.current_op_template.get_or_init(|| t))
    } else {
        f(&t)
    }
}

/// The point in time one op is reported at.
#[derive(Debug, Clone, Copy)]
struct At<'a> {
    /// `currentOpTime`, formatted once per `currentOp` run.
    time: &'a str,
    elapsed: Duration,
}

/// The value of a dynamic (or constant tail) field of an op document; `None` when the field is
/// absent. Other fields: from the template.
fn op_field(template: &Document, op: &OpEntry, at: At<'_>, name: &str) -> Option<Bson> {
    Some(match name {
        "currentOpTime" => Bson::String(at.time.to_owned()),
        "secs_running" => Bson::Int64(at.elapsed.as_secs() as i64),
        "microsecs_running" => Bson::Int64(i64::try_from(at.elapsed.as_micros()).unwrap_or(i64::MAX)),
        "planSummary" => Bson::String(op.plan_summary.lock().clone()?),
        "cursor" => {
            let cursor_id = op.cursor_id.load(Ordering::Relaxed);
            if cursor_id == 0 {
                return None;
            }
            Bson::Document(doc! {"cursorId": cursor_id})
        }
        "numYields" => Bson::Int64(op.state.yields() as i64),
        "locks" | "lockStats" => Bson::Document(Document::new()),
        "waitingForLock" => Bson::Boolean(false),
        "killPending" => {
            if !op.state.killed() {
                return None;
            }
            Bson::Boolean(true)
        }
        other => return template.get(other).cloned(),
    })
}

/// The full op document: the template with its dynamic fields set, then the tail.
fn op_doc_at(template: &Document, op: &OpEntry, at: At<'_>) -> Document {
    let mut d = template.clone();
    for name in ["currentOpTime", "secs_running", "microsecs_running"] {
        if let (Some(slot), Some(v)) = (d.get_mut(name), op_field(template, op, at, name)) {
            *slot = v;
        }
    }
    for name in OP_TAIL_FIELDS {
        if let Some(v) = op_field(template, op, at, name) {
            d.insert(*name, v);
        }
    }
    d
}

/// The `$currentOp` document of one active op.
pub fn op_doc(host: &str, op: &OpEntry) -> Document {
    let time = current_op_time();
    let at = At { time: &time, elapsed: op.elapsed() };
    with_template(host, op, |t| op_doc_at(t, op, at))
}

/// A predicate on `$currentOp` documents (the leading `$match` of the pipeline, or the currentOp
/// command's predicates) that lets the registry skip what cannot match.
///
/// Pushing down never changes results: documents are only left out when the same [`Filter`] rejects
/// them, and callers still apply the full predicate afterwards (the pipeline keeps its `$match`).
#[derive(Debug, Clone)]
pub struct Pushdown {
    filter: Filter,
    /// The fields that change while an op runs ([`OP_DYNAMIC_FIELDS`]) that the predicate reads:
    /// computed once per op into its [`OpView`]; every other field is read in place from the op's
    /// cached template. All of them when the predicate reads the whole document (`$$ROOT`).
    live_fields: Vec<String>,
    /// When the predicate requires `opid` to be one of these: only those ops can match, and no idle
    /// entry (they have no `opid`).
    opids: Option<Vec<i32>>,
}

impl Pushdown {
    /// The pushdown for a filter document; `None` when it does not parse (the pipeline then reports
    /// the error as before) or is empty.
    pub fn new(filter: &Document) -> Option<Pushdown> {
        if filter.is_empty() {
            return None;
        }
        let parsed = Filter::parse(filter).ok()?;
        let live_fields = match parsed.top_level_fields() {
            Some(fields) => fields.into_iter().filter(|f| OP_DYNAMIC_FIELDS.contains(&f.as_str())).collect(),
            None => OP_DYNAMIC_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
        };
        let opids = opid_candidates(&parsed);
        Some(Pushdown { filter: parsed, live_fields, opids })
    }

    /// The pushdown for the stage after `$currentOp`, when it is a `$match`.
    pub fn for_next_stage(stage: Option<&Document>) -> Option<Pushdown> {
        let stage = stage?;
        if stage.len() != 1 {
            return None;
        }
        match stage.get("$match") {
            Some(Bson::Document(f)) => Pushdown::new(f),
            _ => None,
        }
    }

    /// Whether the predicate holds for the op document described by `template` at `at`, without
    /// building it: the filter reads an [`OpView`]. (A predicate such as docplane's own-entry
    /// exclusion reads `command` and `clientMetadata`; building even just those fields copied both
    /// for every op of every read.) Errors (of `$expr`) are the ones the whole document gives.
    fn matches_op(&self, template: &Document, op: &OpEntry, at: At<'_>) -> Result<bool, CommandError> {
        let view = OpView { template, op, at, live: op_partial(template, op, at, &self.live_fields) };
        self.filter.try_matches_fields(&view)
    }
}

/// An op's `$currentOp` document as a filter sees it: the fields that change while the op runs
/// from `live`, every other field in place from the cached template (whose running-time fields
/// are placeholders, never read through the view).
struct OpView<'a> {
    template: &'a Document,
    op: &'a OpEntry,
    at: At<'a>,
    /// The dynamic fields the filter reads, as [`op_field`] gives them (absent when the op has none).
    live: Document,
}

impl Fields for OpView<'_> {
    fn field(&self, key: &str) -> Option<&Bson> {
        if OP_DYNAMIC_FIELDS.contains(&key) { self.live.get(key) } else { self.template.get(key) }
    }

    fn to_document(&self) -> Document {
        op_doc_at(self.template, self.op, self.at)
    }
}

/// The fields of an op document named by `fields` (those it has), in `fields` order.
fn op_partial(template: &Document, op: &OpEntry, at: At<'_>, fields: &[String]) -> Document {
    let mut partial = Document::new();
    for f in fields {
        if let Some(v) = op_field(template, op, at, f) {
            partial.insert(f.clone(), v);
        }
    }
    partial
}

/// The opids a filter restricts `opid` to (a conjunctive equality or `$in` on it), or `None` when it
/// does not. Values that are not integral numbers can never equal an (Int32) opid and are dropped.
fn opid_candidates(filter: &Filter) -> Option<Vec<i32>> {
    let (_, pred) = filter
        .index_predicates()
        .into_iter()
        .find(|(p, pred)| p == "opid" && matches!(pred, IndexPredicate::Eq(_) | IndexPredicate::In(_)))?;
    let values = match pred {
        IndexPredicate::Eq(v) => vec![v],
        IndexPredicate::In(vs) => vs,
        IndexPredicate::Range { .. } => return None,
    };
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        match v {
            Bson::Int32(n) => out.push(n),
            Bson::Int64(n) => out.extend(i32::try_from(n).ok()),
            Bson::Double(d) if d.fract() == 0.0 && d >= f64::from(i32::MIN) && d <= f64::from(i32::MAX) => {
                out.push(d as i32);
            }
            // Decimal equality is the matcher's business: no pushdown.
            Bson::Decimal128(_) => return None,
            _ => {}
        }
    }
    Some(out)
}

/// One `$currentOp` entry of a read, not built yet: an op (with its running time at the read),
/// or an entry that is built already (idle connection, idle cursor).
#[derive(Debug)]
enum Entry {
    Op {
        op: Arc<OpEntry>,
        elapsed: Duration,
        /// The op's template when it cannot be cached on the op (client metadata unknown).
        template: Option<Document>,
    },
    Built(Document),
}

/// The `$currentOp` entries of one read, in order (ops by opid, idle connections, idle
/// cursors), built whole only on demand: the pipeline after `$currentOp` reads them as a
/// [`DocSource`], so that partial entries (the few fields its filters, sort keys and added fields
/// read) decide which entries it outputs and only those are built whole.
#[derive(Debug)]
pub struct CurrentOpEntries {
    /// `currentOpTime`, the same for every entry of the read.
    time: String,
    entries: Vec<Entry>,
}

/// At most this many entries with no stage left to run are built on the connection's own task
/// rather than on a blocking thread (building one takes microseconds).
pub const INLINE_ENTRIES: usize = 64;

impl CurrentOpEntries {
    /// How many entries the read holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the read holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn op_parts<'a>(&'a self, op: &'a OpEntry, own: &'a Option<Document>) -> Option<(&'a Document, At<'a>)> {
        let template = own.as_ref().or_else(|| op.current_op_template.get())?;
        Some((template, At { time: &self.time, elapsed: Duration::ZERO }))
    }

    /// Every entry, built.
    pub fn into_docs(self) -> Vec<Document> {
        (0..self.entries.len()).map(|i| self.whole(i)).collect()
    }
}

impl DocSource for CurrentOpEntries {
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// An op's fixed document is its template (whose running times are placeholders: live); a
    /// built entry is its own.
    fn fixed(&self, i: usize) -> Option<&Document> {
        match self.entries.get(i)? {
            Entry::Op { op, template, .. } => template.as_ref().or_else(|| op.current_op_template.get()),
            Entry::Built(d) => Some(d),
        }
    }

    fn is_live(&self, name: &str) -> bool {
        OP_DYNAMIC_FIELDS.contains(&name)
    }

    fn partial_values(&self, i: usize, fields: &[String], out: &mut Vec<(usize, Bson)>) {
        match self.entries.get(i) {
            Some(Entry::Op { op, elapsed, template }) => {
                if let Some((t, at)) = self.op_parts(op, template) {
                    let at = At { elapsed: *elapsed, ..at };
                    out.extend(
                        fields.iter().enumerate().filter_map(|(j, f)| op_field(t, op, at, f).map(|v| (j, v))),
                    );
                }
            }
            Some(Entry::Built(d)) => {
                out.extend(fields.iter().enumerate().filter_map(|(j, f)| d.get(f).map(|v| (j, v.clone()))));
            }
            None => {}
        }
    }

    fn whole(&self, i: usize) -> Document {
        match self.entries.get(i) {
            Some(Entry::Op { op, elapsed, template }) => match self.op_parts(op, template) {
                Some((t, at)) => op_doc_at(t, op, At { elapsed: *elapsed, ..at }),
                None => Document::new(),
            },
            Some(Entry::Built(d)) => d.clone(),
            None => Document::new(),
        }
    }

    fn may_have(&self, name: &str) -> bool {
        let op_field_name = OP_TAIL_FIELDS.contains(&name);
        self.entries.iter().any(|e| match e {
            Entry::Op { op, template, .. } => {
                op_field_name
                    || template
                        .as_ref()
                        .or_else(|| op.current_op_template.get())
                        .is_some_and(|t| t.contains_key(name))
            }
            Entry::Built(d) => d.contains_key(name),
        })
    }
}

/// The op's template: `None` when it is cached on the op (built now if need be), else a fresh
/// one (the connection's client metadata is not known yet, so it may still change).
fn uncached_template(host: &str, op: &OpEntry) -> Option<Document> {
    if op.current_op_template.get().is_some() {
        return None;
    }
    let t = build_op_template(host, op);
    if op.conn.current_op_prefix.get().is_some() {
        // Another thread may have cached it meanwhile: it built the same template from the same
        // fixed fields, so either copy serves.
        if op.current_op_template.set(t).is_err() {
            tracing::trace!(op = op.opid, "currentOp template cached by another reader first");
        }
        return None;
    }
    Some(t)
}

/// All `$currentOp` documents visible to `viewer` under `opts`.
pub fn current_op_docs(state: &NodeState, viewer: &[UserName], opts: CurrentOpOptions) -> Vec<Document> {
    current_op_docs_matching(state, viewer, opts, None).unwrap_or_default()
}

/// Like [`current_op_docs`], leaving out documents `pushdown` rejects (without building most of
/// them). The order is the same: ops by opid, idle connections, idle cursors.
pub fn current_op_docs_matching(
    state: &NodeState,
    viewer: &[UserName],
    opts: CurrentOpOptions,
    pushdown: Option<&Pushdown>,
) -> Result<Vec<Document>, CommandError> {
    Ok(current_op_entries(state, viewer, opts, pushdown)?.into_docs())
}

/// The entries of [`current_op_docs_matching`], not built yet. `pushdown` is applied exactly:
/// an entry is left out if and only if its whole document fails the predicate, and an error the
/// predicate raises on a whole document (`$expr`) is raised.
pub fn current_op_entries(
    state: &NodeState,
    viewer: &[UserName],
    opts: CurrentOpOptions,
    pushdown: Option<&Pushdown>,
) -> Result<CurrentOpEntries, CommandError> {
    let host = state.host.as_str();
    let visible = |users: &[UserName]| opts.all_users || users == viewer;
    let keep = |d: &Document| pushdown.map_or(Ok(true), |p| p.filter.try_matches(d));
    let mut out = CurrentOpEntries { time: current_op_time(), entries: Vec::new() };
    let op_entry = |op: Arc<OpEntry>, time: &str| -> Result<Option<Entry>, CommandError> {
        if !visible(&op.users) {
            return Ok(None);
        }
        let elapsed = op.elapsed();
        let mut template = uncached_template(host, &op);
        if opts.truncate_ops
            && let Some(short) = op.truncated_command()
        {
            // This read's own template: the cached one shows the whole command.
            let mut t = template.take().or_else(|| op.current_op_template.get().cloned());
            if let Some(slot) = t.as_mut().and_then(|t| t.get_mut("command")) {
                *slot = Bson::Document(short.clone());
            }
            template = t;
        }
        let Some(t) = template.as_ref().or_else(|| op.current_op_template.get()) else {
            return Ok(None);
        };
        if let Some(p) = pushdown
            && !p.matches_op(t, &op, At { time, elapsed })?
        {
            return Ok(None);
        }
        Ok(Some(Entry::Op { op, elapsed, template }))
    };
    if let Some(opids) = pushdown.and_then(|p| p.opids.as_ref()) {
        // Only these ops can match; idle entries have no opid.
        for op in state.ops.get_many(opids) {
            if let Some(e) = op_entry(op, &out.time)? {
                out.entries.push(e);
            }
        }
        return Ok(out);
    }
    let ops = state.ops.snapshot();
    out.entries.reserve(ops.len());
    let busy_conns: HashSet<i64> =
        if opts.idle_connections { ops.iter().map(|op| op.conn.id).collect() } else { HashSet::new() };
    for op in ops {
        if let Some(e) = op_entry(op, &out.time)? {
            out.entries.push(e);
        }
    }
    if opts.idle_connections {
        let conns: Vec<_> = state.conns.lock().values().cloned().collect();
        for c in conns {
            if busy_conns.contains(&c.id) {
                continue;
            }
            let users = c.users();
            if !visible(&users) {
                continue;
            }
            let mut d = conn_prefix(host, &c);
            d.insert("active", false);
            d.insert("currentOpTime", out.time.as_str());
            d.insert("effectiveUsers", users_doc(&users));
            if keep(&d)? {
                out.entries.push(Entry::Built(d));
            }
        }
    }
    // `idleSessions`: mongod lists an inactive logical session only while it holds transaction
    // state (an open multi-document transaction's locks and storage snapshot). This node refuses
    // `txnNumber` (see `cmd::check_session_info`), so no session ever holds such state and the
    // option, though accepted and honoured, yields no entry. A session merely seen through an
    // `lsid` is not one of them (mongod does not list those either).
    if opts.idle_cursors {
        for (conn_id, users, mut d) in state.cursors.idle_cursor_docs() {
            if !visible(&users) {
                continue;
            }
            d.insert("host", host);
            d.insert("desc", format!("conn{conn_id}"));
            d.insert("connectionId", i32::try_from(conn_id).unwrap_or(i32::MAX));
            d.insert("effectiveUsers", users_doc(&users));
            if keep(&d)? {
                out.entries.push(Entry::Built(d));
            }
        }
    }
    Ok(out)
}

/// Generic command arguments that are not currentOp predicates.
const GENERIC_ARGS: &[&str] = &[
    "currentOp",
    "$all",
    "$ownOps",
    "$db",
    "lsid",
    "$clusterTime",
    "$readPreference",
    "maxTimeMS",
    "comment",
    "txnNumber",
    "autocommit",
    "startTransaction",
    "readConcern",
    "writeConcern",
    "apiVersion",
    "apiStrict",
    "apiDeprecationErrors",
    "$audit",
    "$client",
    "$queryOptions",
];

/// Splits the currentOp command into (all, ownOps, predicate filter).
pub fn parse_current_op_command(cmd: &Document) -> Result<(bool, bool, Document), CommandError> {
    let all = cmd.get("$all").is_some_and(util::truthy);
    let own = cmd.get("$ownOps").is_some_and(util::truthy);
    let mut filter = Document::new();
    for (k, v) in cmd {
        if !GENERIC_ARGS.contains(&k.as_str()) {
            filter.insert(k.clone(), v.clone());
        }
    }
    Ok((all, own, filter))
}

/// `{currentOp: 1, $all, $ownOps, <predicates>}` -> `{inprog: [...]}`.
pub async fn current_op_command(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let (all, own, filter_doc) = parse_current_op_command(cmd)?;
    // Refuses a bad predicate; a good one is applied exactly by the pushdown.
    Filter::parse(&filter_doc)?;
    let inprog = ctx.has_cluster(Action::Inprog);
    let opts = CurrentOpOptions {
        all_users: inprog && !own,
        idle_connections: all,
        idle_sessions: all,
        idle_cursors: false,
        local_ops: false,
        truncate_ops: true,
    };
    let viewer = ctx.users();
    let pushdown = Pushdown::new(&filter_doc);
    let docs = current_op_docs_matching(ctx.state, &viewer, opts, pushdown.as_ref())?;
    Ok(doc! {"inprog": docs})
}

/// Runs `$currentOp` as the first stage of an aggregation on `admin`: the documents it produces.
pub fn current_op_stage(ctx: &Ctx<'_>, spec: &Bson) -> Result<Vec<Document>, CommandError> {
    Ok(current_op_stage_before(ctx, spec, None)?.0.into_docs())
}

/// [`current_op_stage`] followed by the pipeline's next stage `next`, as entries not built yet.
/// When `next` is a `$match`, it is applied here, exactly (mostly without building the entries
/// it drops), and the second value is true: the caller must not run it again.
pub fn current_op_stage_before(
    ctx: &Ctx<'_>,
    spec: &Bson,
    next: Option<&Document>,
) -> Result<(CurrentOpEntries, bool), CommandError> {
    if ctx.db != "admin" {
        return Err(CommandError::new(
            73,
            "InvalidNamespace",
            "$currentOp must be run against the 'admin' database with {aggregate: 1}",
        ));
    }
    let opts = CurrentOpOptions::parse(spec)?;
    if opts.all_users && !ctx.has_cluster(Action::Inprog) {
        return Err(CommandError::unauthorized(
            "not authorized on admin to execute command { aggregate: 1, pipeline: [ { $currentOp: { allUsers: true } } ] }",
        ));
    }
    let pushdown = Pushdown::for_next_stage(next);
    let entries = current_op_entries(ctx.state, &ctx.users(), opts, pushdown.as_ref())?;
    Ok((entries, pushdown.is_some()))
}

/// Parses killOp's `op` (a 32-bit integer, possibly sent as long or double).
pub fn parse_kill_op_id(v: Option<&Bson>) -> Result<i32, CommandError> {
    let Some(b) = v else {
        return Err(CommandError::bad_value("Did not provide \"op\" field"));
    };
    let n = util::as_i64(b).ok_or_else(|| CommandError::type_mismatch("\"op\" must be a number"))?;
    i32::try_from(n).map_err(|_| {
        CommandError::location(26823, format!("invalid op : {n}. Op ID cannot be represented with 32 bits"))
    })
}

/// `{killOp: 1, op: <int>}`.
pub fn kill_op(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let opid = parse_kill_op_id(cmd.get("op"))?;
    let may_kill_any = ctx.has_cluster(Action::Killop);
    let me = ctx.users();
    match ctx.state.ops.get(opid) {
        Some(op) => {
            if !may_kill_any && op.users != me {
                return Err(CommandError::unauthorized(
                    "not authorized on admin to execute command { killOp: 1 }",
                ));
            }
            tracing::info!(opid, by_conn = ctx.conn.info.id, target_conn = op.conn.id, "killOp");
            op.state.kill(KILL_INTERRUPTED);
        }
        None => {
            if !may_kill_any {
                return Err(CommandError::unauthorized(
                    "not authorized on admin to execute command { killOp: 1 }",
                ));
            }
        }
    }
    Ok(doc! {"info": "attempting to kill op"})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kill_op_id_parsing() {
        assert_eq!(parse_kill_op_id(Some(&Bson::Int32(5))).unwrap(), 5);
        assert_eq!(parse_kill_op_id(Some(&Bson::Int64(7))).unwrap(), 7);
        assert_eq!(parse_kill_op_id(Some(&Bson::Double(9.0))).unwrap(), 9);
        assert_eq!(parse_kill_op_id(Some(&Bson::Int64(1 << 40))).unwrap_err().code, 26823);
        assert_eq!(parse_kill_op_id(None).unwrap_err().code, 2);
        assert_eq!(parse_kill_op_id(Some(&Bson::String("x".into()))).unwrap_err().code, 14);
    }

    #[test]
    fn current_op_command_splits_filter() {
        let (all, own, f) = parse_current_op_command(
            &doc! {"currentOp": 1, "$all": true, "$db": "admin", "op": "command", "secs_running": {"$gte": 1}},
        )
        .unwrap();
        assert!(all && !own);
        assert_eq!(f, doc! {"op": "command", "secs_running": {"$gte": 1}});
    }

    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
    use std::time::Instant;

    use bson::{Binary, spec::BinarySubtype};

    use crate::NodeConfig;
    use crate::auth::UserStore;
    use crate::ops::{NewOp, OpGuard, OpRegistry};
    use crate::state::OpCounters;

    /// The op document as it was built before the template cache (field by field): the shape the
    /// cached path must reproduce exactly.
    fn reference_op_doc(host: &str, op: &OpEntry, time: &str, elapsed: Duration) -> Document {
        let conn = &op.conn;
        let mut d = doc! {"type": "op"};
        d.insert("host", host);
        d.insert("desc", format!("conn{}", conn.id));
        d.insert("connectionId", i32::try_from(conn.id).unwrap_or(i32::MAX));
        d.insert("client", conn.client.to_string());
        if let Some(app) = conn.app_name() {
            d.insert("appName", app);
        }
        if let Some(meta) = conn.metadata.lock().clone() {
            d.insert("clientMetadata", meta);
        }
        d.insert("active", true);
        d.insert("currentOpTime", time);
        d.insert("effectiveUsers", users_doc(&op.users));
        d.insert("threaded", true);
        d.insert("opid", op.opid);
        if let Some(l) = &op.lsid {
            d.insert("lsid", l.clone());
        }
        d.insert("secs_running", elapsed.as_secs() as i64);
        d.insert("microsecs_running", i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX));
        d.insert("op", op.op);
        d.insert("ns", &op.ns);
        d.insert("redacted", false);
        d.insert("command", (*op.command).clone());
        if let Some(p) = op.plan_summary.lock().clone() {
            d.insert("planSummary", p);
        }
        let cursor_id = op.cursor_id.load(Ordering::Relaxed);
        if cursor_id != 0 {
            d.insert("cursor", doc! {"cursorId": cursor_id});
        }
        d.insert("numYields", op.state.yields() as i64);
        d.insert("locks", Document::new());
        d.insert("waitingForLock", false);
        d.insert("lockStats", Document::new());
        if op.state.killed() {
            d.insert("killPending", true);
        }
        d
    }

    /// Byte-for-byte equality (field order and types included).
    fn same_bytes(a: &Document, b: &Document) {
        assert_eq!(bson::to_vec(a).unwrap(), bson::to_vec(b).unwrap(), "\n{a}\n{b}");
    }

    fn state() -> NodeState {
        NodeState {
            host: "h:1".into(),
            config: NodeConfig::default(),
            engine: docplane_engine::Engine::in_memory(),
            ops: Arc::new(OpRegistry::default()),
            sessions: Default::default(),
            cursors: Default::default(),
            users: UserStore::in_memory(),
            conns: Default::default(),
            next_conn_id: AtomicI64::new(1),
            total_created: AtomicU64::new(0),
            opcounters: OpCounters::default(),
            started: Instant::now(),
            started_wall: bson::DateTime::now(),
            local_addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            shutting_down: AtomicBool::new(false),
            startup_warnings: Vec::new(),
            process_id: bson::oid::ObjectId::new(),
            failpoints: Default::default(),
            capped_inserts: tokio::sync::watch::Sender::new(0),
        }
    }

    fn conn(st: &NodeState, id: i64, app: Option<&str>, user: Option<&str>) -> Arc<ConnInfo> {
        let c = Arc::new(ConnInfo::new(id, SocketAddr::from(([10, 0, 0, 1], 40_000 + id as u16))));
        if let Some(app) = app {
            *c.metadata.lock() = Some(doc! {
                "application": {"name": app},
                "driver": {"name": "t", "version": "1"},
                "os": {"type": "linux"},
            });
        }
        if let Some(u) = user {
            c.auth.lock().push((UserName::new(u, "admin"), Vec::new()));
        }
        st.conns.lock().insert(id, c.clone());
        c
    }

    fn lsid(n: u8) -> Bson {
        Bson::Document(doc! {"id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![n; 16] }})
    }

    fn start_op(st: &NodeState, c: &Arc<ConnInfo>, session: Option<u8>, command: Document) -> OpGuard {
        let users = c.users();
        let (session, lsid) = match session {
            Some(n) => {
                let (k, l) = st.sessions.touch(&lsid(n), &users, c).unwrap();
                (Some(k), Some(l))
            }
            None => (None, None),
        };
        let command_name = command.keys().next().cloned().unwrap_or_default();
        st.ops
            .register(NewOp {
                conn: c.clone(),
                users,
                lsid,
                session,
                op: "command",
                ns: "admin.$cmd".into(),
                command: Arc::new(command),
                command_name,
                deadline: None,
            })
            .unwrap()
    }

    #[test]
    fn op_doc_matches_reference_byte_for_byte() {
        let st = state();
        let with_meta = conn(&st, 1, Some("app1"), Some("alice"));
        let without_meta = conn(&st, 2, None, None);
        let a = start_op(&st, &with_meta, Some(1), doc! {"sleep": 1, "millis": 5000_i64, "$db": "admin"});
        let b = start_op(&st, &without_meta, None, doc! {"find": "c", "filter": {"x": 1}});
        let time = current_op_time();
        for round in 0..3 {
            for g in [&a, &b] {
                let op = &g.entry;
                let elapsed = op.elapsed();
                let at = At { time: &time, elapsed };
                let got = with_template(&st.host, op, |t| op_doc_at(t, op, at));
                same_bytes(&got, &reference_op_doc(&st.host, op, &time, elapsed));
            }
            // dynamic fields change between rounds
            match round {
                0 => {
                    a.entry.set_plan_summary("COLLSCAN".into());
                    b.entry.cursor_id.store(77, Ordering::Relaxed);
                    let intr = a.entry.interrupt();
                    for _ in 0..3 {
                        docplane_query::Interrupt::yielded(&intr);
                    }
                }
                _ => b.entry.state.kill(KILL_INTERRUPTED),
            }
        }
        // the connection with metadata is cached, the other is not
        assert!(a.entry.current_op_template.get().is_some());
        assert!(with_meta.current_op_prefix.get().is_some());
        assert!(b.entry.current_op_template.get().is_none());
        // metadata arriving later (first hello) shows up for new ops
        *without_meta.metadata.lock() = Some(doc! {"application": {"name": "late"}});
        let c = start_op(&st, &without_meta, None, doc! {"ping": 1});
        let d = op_doc(&st.host, &c.entry);
        assert_eq!(d.get_str("appName").unwrap(), "late");
        assert!(d.contains_key("clientMetadata"));
    }

    /// Strips the fields that depend on the instant of the call.
    fn timeless(docs: Vec<Document>) -> Vec<Document> {
        docs.into_iter()
            .map(|mut d| {
                for f in ["currentOpTime", "secs_running", "microsecs_running"] {
                    d.remove(f);
                }
                d
            })
            .collect()
    }

    #[test]
    fn pushdown_never_changes_results() {
        let st = state();
        let c1 = conn(&st, 1, Some("app1"), Some("alice"));
        let c2 = conn(&st, 2, Some("app2"), Some("bob"));
        let c3 = conn(&st, 3, None, Some("alice"));
        let _idle_conn = conn(&st, 4, Some("idle"), Some("alice"));
        let _idle_anon = conn(&st, 5, None, None);
        // Logical sessions seen, no op running and no transaction state: never listed (as mongod).
        st.sessions.touch(&lsid(90), &c1.users(), &c1).unwrap();
        st.sessions.touch(&lsid(91), &c2.users(), &c2).unwrap();
        let g1 = start_op(&st, &c1, Some(1), doc! {"sleep": 1, "millis": 1_i64, "$db": "admin"});
        let g2 = start_op(&st, &c2, Some(2), doc! {"sleep": 1, "millis": 2_i64, "$db": "admin"});
        let g3 = start_op(&st, &c3, None, doc! {"find": "c", "comment": "x"});
        g2.entry.set_plan_summary("COLLSCAN".into());
        g3.entry.state.kill(KILL_INTERRUPTED);
        let (o1, o2, o3) = (g1.entry.opid, g2.entry.opid, g3.entry.opid);
        let filters = [
            doc! {"opid": o1},
            doc! {"opid": {"$in": [i64::from(o2), f64::from(o3), "x", o1 + 1000]}},
            doc! {"opid": {"$eq": o2}, "active": true},
            doc! {"opid": -1},
            doc! {"opid": 2.5},
            doc! {"opid": null},
            doc! {"opid": {"$in": [o1, null]}},
            doc! {"opid": {"$gte": o2}},
            doc! {"opid": {"$ne": o1}},
            doc! {"command.sleep": 1},
            doc! {"command.millis": 2, "op": "command"},
            doc! {"active": false},
            doc! {"type": "idleSession"},
            doc! {"appName": "idle"},
            doc! {"clientMetadata.application.name": "app2"},
            doc! {"planSummary": "COLLSCAN"},
            doc! {"killPending": true},
            doc! {"numYields": 0, "locks": {}},
            doc! {"secs_running": {"$gte": 0}},
            doc! {"effectiveUsers.user": "bob"},
            doc! {"$or": [{"opid": o1}, {"desc": "conn4"}], "$comment": "c"},
            doc! {"$and": [{"opid": {"$in": [o1, o2]}}, {"opid": o2}]},
            doc! {"$nor": [{"active": true}]},
            doc! {"$expr": {"$eq": ["$opid", o3]}},
            doc! {"$expr": {"$gt": ["$microsecs_running", 0]}},
            doc! {"$expr": {"$eq": [{"$size": {"$objectToArray": "$$ROOT"}}, 19]}},
            doc! {"$nor": [{"$expr": {"$and": [{"$eq": ["$appName", "app1"]}, {"$ne": ["$active", true]}]}}]},
            doc! {"lsid": {"$exists": false}},
        ];
        let viewers = [vec![UserName::new("alice", "admin")], vec![UserName::new("bob", "admin")]];
        for all_users in [true, false] {
            for (viewer, own) in viewers.iter().zip([3, 1]) {
                let opts = CurrentOpOptions {
                    all_users,
                    idle_connections: true,
                    idle_sessions: true,
                    idle_cursors: true,
                    local_ops: false,
                    truncate_ops: false,
                };
                let everything = current_op_docs(&st, viewer, opts);
                // all: 3 ops, 2 idle connections; alice: 2 ops, conn4; bob: 1 op. The idle logical
                // sessions 90 and 91 hold no transaction state: no entry.
                assert_eq!(everything.len(), if all_users { 5 } else { own }, "{everything:?}");
                assert!(everything.iter().all(|d| d.get_str("type") != Ok("idleSession")), "{everything:?}");
                for f in &filters {
                    let filter = Filter::parse(f).unwrap();
                    let want: Vec<Document> =
                        everything.iter().filter(|d| filter.matches(d)).cloned().collect();
                    let p = Pushdown::new(f).unwrap();
                    // Exact: nothing to filter afterwards.
                    let got = current_op_docs_matching(&st, viewer, opts, Some(&p)).unwrap();
                    assert_eq!(timeless(got), timeless(want), "filter {f}, all {all_users}, {viewer:?}");
                }
            }
        }
    }

    #[test]
    fn pushdown_raises_the_errors_of_the_whole_document() {
        let st = state();
        let c1 = conn(&st, 1, Some("app1"), Some("alice"));
        let _g = start_op(&st, &c1, None, doc! {"sleep": 1, "millis": 1_i64, "$db": "admin"});
        let opts = CurrentOpOptions { all_users: true, ..CurrentOpOptions::default() };
        let p = Pushdown::new(&doc! {"$expr": {"$divide": [1, {"$subtract": ["$opid", "$opid"]}]}}).unwrap();
        let e = current_op_docs_matching(&st, &[], opts, Some(&p)).unwrap_err();
        assert_eq!(e.code, 2, "{e:?}");
    }

    /// The pipeline over entries read field by field (`DocSource`) gives what it gives over the
    /// entries built whole, field order included.
    #[test]
    fn entries_as_a_source_equal_whole_documents() {
        let st = state();
        let c1 = conn(&st, 1, Some("app1"), Some("alice"));
        let c2 = conn(&st, 2, None, None);
        let _idle = conn(&st, 3, Some("idle"), None);
        let guards: Vec<OpGuard> = (0..40)
            .map(|i| {
                let c = if i % 3 == 0 { &c2 } else { &c1 };
                let g = start_op(
                    &st,
                    c,
                    (i % 2 == 0).then_some(i as u8),
                    doc! {"sleep": 1, "millis": i64::from(i)},
                );
                if i % 5 == 0 {
                    g.entry.set_plan_summary(format!("IXSCAN {{ a: {i} }}"));
                }
                g
            })
            .collect();
        let opts =
            CurrentOpOptions { all_users: true, idle_connections: true, ..CurrentOpOptions::default() };
        let pipelines = [
            vec![doc! {"$count": "n"}],
            vec![doc! {"$sort": {"command.millis": -1}}, doc! {"$skip": 3}, doc! {"$limit": 5}],
            vec![
                doc! {"$addFields": {"k": {"$mod": ["$command.millis", 7]}, "z": "$$REMOVE"}},
                doc! {"$match": {"k": {"$lt": 4}}},
                doc! {"$facet": {
                    "n": [{"$count": "n"}],
                    "page": [{"$sort": {"k": -1, "opid": 1}}, {"$limit": 4}, {"$project": {"clientMetadata": 0}}],
                    "all": [{"$sort": {"opid": -1}}, {"$addFields": {"k2": "$k"}}],
                }},
            ],
            // Writes a field the entries have: whole documents from the start.
            vec![doc! {"$addFields": {"opid": 1}}, doc! {"$limit": 2}],
            // Reads the whole document.
            vec![doc! {"$addFields": {"n": {"$size": {"$objectToArray": "$$ROOT"}}}}, doc! {"$limit": 3}],
            vec![doc! {"$project": {"opid": 1}}, doc! {"$sort": {"opid": -1}}],
            // Nested additions; a field removed and added again goes last, as in a document.
            vec![
                doc! {"$addFields": {"n": {"a": "$opid", "b": "$microsecs_running"}}},
                doc! {"$addFields": {"n.c": 1}},
                doc! {"$match": {"n.a": {"$gt": 0}}},
                doc! {"$sort": {"n.a": -1}},
                doc! {"$limit": 3},
            ],
            vec![
                doc! {"$addFields": {"a": 1, "b": "$secs_running"}},
                doc! {"$addFields": {"a": "$$REMOVE"}},
                doc! {"$addFields": {"a": 3, "b": {"$add": ["$b", 1]}}},
                doc! {"$limit": 2},
            ],
            // Inclusions of live, tail, nested and added fields, inside a `$facet` and at the top.
            vec![
                doc! {"$sort": {"opid": -1}},
                doc! {"$limit": 7},
                doc! {"$project": {
                    "_id": 0, "planSummary": 1, "opid": 1, "microsecs_running": 1, "secs_running": 1,
                    "currentOpTime": 1, "clientMetadata.application.name": 1, "lsid": 1,
                    "command.millis": 1, "numYields": 1, "killPending": 1, "cursor": 1, "absent": 1,
                }},
            ],
            vec![
                doc! {"$addFields": {"k": {"$mod": ["$command.millis", 7]}}},
                doc! {"$facet": {
                    "n": [{"$count": "n"}],
                    "page": [{"$sort": {"k": 1, "opid": 1}}, {"$limit": 5},
                             {"$project": {"k": 1, "desc": 1, "active": 1, "effectiveUsers.user": 1}}],
                }},
            ],
            vec![
                doc! {"$match": {"active": false}},
                doc! {"$project": {"desc": 1, "appName": 1, "active": 1}},
            ],
            vec![doc! {"$match": {"active": false}}, doc! {"$group": {"_id": "$appName"}}],
        ];
        for stages in pipelines {
            let p = docplane_query::Pipeline::parse(&stages).unwrap();
            let entries = current_op_entries(&st, &[], opts, None).unwrap();
            let time = entries.time.clone();
            let intr = docplane_query::NeverInterrupt;
            let lazy = st.engine.run_pipeline_source("admin", &entries, &p, &intr).unwrap();
            let whole = st.engine.run_pipeline("admin", entries.into_docs(), &p, &intr).unwrap();
            assert!(!whole.is_empty());
            // Field order too (`Document` equality ignores it).
            let bytes = |docs: &[Document]| docs.iter().map(|d| bson::to_vec(d).unwrap()).collect::<Vec<_>>();
            assert_eq!(lazy, whole, "{stages:?} at {time}");
            assert_eq!(bytes(&lazy), bytes(&whole), "{stages:?} at {time}");
        }
        drop(guards);
    }

    #[test]
    fn pushdown_analysis() {
        let fields = |f: Document| Filter::parse(&f).unwrap().top_level_fields();
        assert_eq!(
            fields(doc! {"command.sleep": 1, "$or": [{"opid": 1}, {"command.x": 2}], "$comment": "c"}),
            Some(vec!["command".to_owned(), "opid".to_owned()])
        );
        assert_eq!(fields(doc! {"$expr": {"$eq": ["$opid", 1]}}), Some(vec!["opid".to_owned()]));
        assert_eq!(
            fields(doc! {"$expr": {"$let": {"vars": {"x": "$a.b"}, "in": {"$gt": ["$$x", "$$CURRENT.c"]}}}}),
            Some(vec!["a".to_owned(), "c".to_owned()])
        );
        assert_eq!(fields(doc! {"$expr": {"$eq": ["$$ROOT", {}]}}), None);
        assert_eq!(fields(doc! {"$expr": {"$getField": "x.y"}}), Some(vec!["x.y".to_owned()]));
        assert_eq!(
            fields(doc! {"$expr": {"$getField": {"field": "x", "input": "$a"}}}),
            Some(vec!["a".to_owned()])
        );
        let opids = |f: Document| opid_candidates(&Filter::parse(&f).unwrap());
        assert_eq!(opids(doc! {"opid": 5}), Some(vec![5]));
        assert_eq!(opids(doc! {"opid": {"$in": [1_i64, 2.0, 2.5, "3", 1_i64 << 40]}}), Some(vec![1, 2]));
        assert_eq!(opids(doc! {"opid": {"$in": []}}), Some(vec![]));
        assert_eq!(opids(doc! {"opid": null}), None);
        assert_eq!(opids(doc! {"opid": {"$in": [1, null]}}), None);
        assert_eq!(opids(doc! {"opid": {"$gt": 1}}), None);
        assert_eq!(opids(doc! {"$or": [{"opid": 1}, {"opid": 2}]}), None);
        assert_eq!(opids(doc! {"command.opid": 1}), None);
        assert!(Pushdown::for_next_stage(Some(&doc! {"$match": {"opid": 1}})).is_some());
        assert!(Pushdown::for_next_stage(Some(&doc! {"$match": {}})).is_none());
        assert!(Pushdown::for_next_stage(Some(&doc! {"$match": {"opid": {"$bogus": 1}}})).is_none());
        assert!(Pushdown::for_next_stage(Some(&doc! {"$project": {"opid": 1}})).is_none());
        assert!(Pushdown::for_next_stage(None).is_none());
    }

    #[test]
    fn stage_options() {
        let o = CurrentOpOptions::parse(&Bson::Document(doc! {"allUsers": true, "idleConnections": true}))
            .unwrap();
        assert!(o.all_users && o.idle_connections && o.idle_sessions && !o.idle_cursors);
        assert!(CurrentOpOptions::parse(&Bson::Document(doc! {"allUsers": 1})).is_err());
        assert!(CurrentOpOptions::parse(&Bson::Document(doc! {"bogus": true})).is_err());
        assert!(CurrentOpOptions::parse(&Bson::Int32(1)).is_err());
    }
}
