//! Native kill-op rule enforcement: the rule set the control plane installs with the
//! `docplaneKillOpRules` command ([`crate::cmd::rulescmd`]), applied without polling.
//!
//! - `max_concurrency` at admission: when an operation is registered
//!   ([`crate::ops::OpRegistry::register`]), or, for a rule with a `plan_summary` criterion that
//!   the command alone cannot decide, when its plan summary is first set
//!   ([`crate::ops::OpEntry::set_plan_summary`], before the plan runs). Rules are taken in order;
//!   the first whose limit is already reached by the matching operations it admitted claims the
//!   operation: a killing rule refuses it with [`REFUSED_CODE`] (365 TemporarilyUnavailable:
//!   nothing of it was executed, a retry may pass once one of the others ends), an observing rule
//!   records what it would have refused and lets it run (counted by none of the rules after it).
//! - `secs_running` at interrupt points: every matching rule with a limit arms a deadline at the
//!   operation's start plus the limit (one timer task per operation); when it passes, a killing
//!   rule kills the operation as killOp does (11601 Interrupted, landing at the next interrupt
//!   point, within about a millisecond), an observing rule records it. Once killed, later
//!   deadlines do nothing.
//! - Rails, as `docplane_sessions::rails` (its order): commands that need no authentication
//!   (handshake, authentication, `ping`; instantaneous, and refusing them would break
//!   connections) and the server's own work (the node has none in its registry) are never
//!   touched; then docplane's own connections (the control plane's application name and its
//!   authenticated users, as they pushed the rules), operations running as `__system`, the
//!   instance's protected users (`name` or `name@db`) and application names. Protected
//!   operations are neither refused, killed, nor counted.
//! - Every refusal, kill and observation is an event in a bounded queue ([`MAX_EVENTS`]; beyond
//!   it events are dropped and counted) that the control plane reads and acknowledges with the
//!   same command and turns into kill records.
//!
//! Installing a rule set re-evaluates the operations already running as if they were admitted
//! now, oldest first: a killing rule's surplus over `max_concurrency` is killed (11601), and
//! deadlines already passed fire at once.
//!
//! [`matches`] is the port of `docplane_sessions::rules::matches` (the node cannot depend on the
//! control plane's crates); a test in `docplane-sessions` holds the two equal.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use docplane_query::CommandError;
use parking_lot::Mutex;

use crate::auth::UserName;
use crate::ops::{KILL_INTERRUPTED, OpEntry, OpRegistry};

/// The code of an operation refused at admission by a rule's `max_concurrency`.
pub const REFUSED_CODE: i32 = 365;
/// Its `codeName`.
pub const REFUSED_CODE_NAME: &str = "TemporarilyUnavailable";
/// Most rules in one installed set.
pub const MAX_RULES: usize = 64;
/// Most events the node keeps unacknowledged.
pub const MAX_EVENTS: usize = 10_000;
/// Most events one reply carries.
pub const MAX_EVENTS_PER_REPLY: usize = 1_000;
/// The cluster's internal user.
pub const CLUSTER_USER: &str = "__system";
/// The operation types a rule may name (`docplane_sessions::rules::RULE_OP_TYPES`).
pub const RULE_OP_TYPES: &[&str] = &["insert", "update", "query", "command", "remove", "getmore"];
/// The plan summaries a rule may name (`docplane_sessions::rules::RULE_PLAN_SUMMARIES`).
pub const RULE_PLAN_SUMMARIES: &[&str] = &[
    "COLLSCAN",
    "SORT_KEY_GENERATOR",
    "SKIP",
    "LIMIT",
    "GEO_NEAR_2DSPHERE",
    "GEO_NEAR_2D",
    "AGGREGATE",
    "OR",
];

/// One rule as the node applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRule {
    pub id: String,
    pub operation_types: Vec<String>,
    pub namespaces: Vec<String>,
    pub client_ips: Vec<String>,
    pub plan_summary: String,
    /// 0: no limit.
    pub max_concurrency: i64,
    /// 0: no limit.
    pub secs_running: i64,
    /// Record only.
    pub observe: bool,
}

impl NodeRule {
    /// The rule as events name it (the installed form).
    pub fn to_doc(&self) -> Document {
        doc! {
            "id": &self.id, "operationTypes": &self.operation_types, "namespaces": &self.namespaces,
            "clientIps": &self.client_ips, "planSummary": &self.plan_summary,
            "maxConcurrency": self.max_concurrency, "secsRunning": self.secs_running,
            "mode": if self.observe { "observe" } else { "kill" },
        }
    }
}

/// What a rule reads of an operation.
#[derive(Debug, Clone, Copy)]
pub struct OpView<'a> {
    /// `op` as `$currentOp` reports it.
    pub op_type: &'a str,
    pub namespace: &'a str,
    /// `client` (`ip:port`).
    pub client: &'a str,
    /// Empty until set.
    pub plan_summary: &'a str,
    /// Its command is an `aggregate`.
    pub is_aggregate: bool,
}

fn host_of(client: &str) -> &str {
    match client.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => client,
    }
}

/// The criteria that do not read the plan summary.
fn matches_without_plan(rule: &NodeRule, op: &OpView<'_>) -> bool {
    let type_ok = rule.operation_types.is_empty() || rule.operation_types.iter().any(|t| t == op.op_type);
    let ns_ok = rule.namespaces.is_empty()
        || rule.namespaces.iter().any(|n| {
            if n.contains('.') {
                op.namespace == n
            } else {
                op.namespace == n
                    || op.namespace.strip_prefix(n.as_str()).is_some_and(|rest| rest.starts_with('.'))
            }
        });
    let ip_ok = rule.client_ips.is_empty() || rule.client_ips.iter().any(|ip| host_of(op.client) == ip);
    type_ok && ns_ok && ip_ok
}

fn plan_matches(rule: &NodeRule, op: &OpView<'_>) -> bool {
    let words = || op.plan_summary.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    if rule.plan_summary.is_empty() {
        true
    } else if rule.plan_summary == "AGGREGATE" {
        op.is_aggregate || words().any(|w| w == "AGGREGATE")
    } else {
        words().any(|w| w.eq_ignore_ascii_case(&rule.plan_summary))
    }
}

/// Whether `rule` can decide on the operation only once its plan summary is known.
pub fn needs_plan(rule: &NodeRule, op: &OpView<'_>) -> bool {
    let decided_by_command = rule.plan_summary == "AGGREGATE" && op.is_aggregate;
    !(rule.plan_summary.is_empty() || decided_by_command)
}

/// Whether `rule` matches the operation: each set criterion "any of" its values (the port of
/// `docplane_sessions::rules::matches`).
pub fn matches(rule: &NodeRule, op: &OpView<'_>) -> bool {
    matches_without_plan(rule, op) && plan_matches(rule, op)
}

/// Whether the protected name `entry` covers `user` (`name`, or `name@db`), as
/// `docplane_sessions::rails::user_matches`.
pub fn user_matches(entry: &str, user: &UserName) -> bool {
    entry == user.user
        || entry.strip_prefix(user.user.as_str()).and_then(|rest| rest.strip_prefix('@')) == Some(&user.db)
}

/// The rails the control plane pushes with its rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rails {
    pub protected_users: Vec<String>,
    pub protected_app_names: Vec<String>,
    /// The application name of docplane's connections.
    pub control_app_name: String,
    /// The users docplane's connections authenticate as (those of the installing connection).
    pub control_users: Vec<UserName>,
}

impl Rails {
    /// Why an operation of a connection with `app` and `users` is protected, if it is.
    pub fn protection(&self, app: Option<&str>, users: &[UserName]) -> Option<&'static str> {
        if app == Some(self.control_app_name.as_str()) && users == self.control_users.as_slice() {
            Some("docplane")
        } else if users.iter().any(|u| u.user == CLUSTER_USER) {
            Some("cluster member")
        } else if users.iter().any(|u| self.protected_users.iter().any(|p| user_matches(p, u))) {
            Some("protected user")
        } else if app.is_some_and(|a| self.protected_app_names.iter().any(|p| p == a)) {
            Some("protected application")
        } else {
            None
        }
    }
}

/// An installed rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// The control plane's name for this content (echoed back).
    pub generation: i64,
    pub rules: Vec<NodeRule>,
    pub rails: Rails,
}

/// A rule's state on one operation.
#[derive(Debug, Default)]
pub struct OpRules {
    /// The install it was evaluated under (0: none).
    install: u64,
    /// Rules whose `max_concurrency` counts it.
    held: Vec<usize>,
    /// Rules that match but for the plan summary, decided when it is set.
    pending: Vec<usize>,
    /// Its `secs_running` deadlines.
    deadlines: Vec<(Instant, usize)>,
    timer: Option<tokio::task::AbortHandle>,
}

impl Drop for OpRules {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    set: Option<Arc<RuleSet>>,
    /// Install counter (0: never installed).
    install: u64,
    counts: Vec<usize>,
    events: VecDeque<Document>,
    next_seq: i64,
    dropped: i64,
    host: String,
    runtime: Option<tokio::runtime::Handle>,
}

/// What a read of the queue answers.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBatch {
    pub generation: Option<i64>,
    pub events: Vec<Document>,
    /// Events dropped since start because the queue was full.
    pub dropped: i64,
    /// Events still queued after these.
    pub remaining: usize,
}

/// The node's enforcement of installed rules (one per [`OpRegistry`]).
#[derive(Debug)]
pub struct NativeRules {
    /// Whether a non-empty set is installed (read without the lock on every registration).
    active: AtomicBool,
    /// This process's id: event sequence numbers restart with it.
    pub boot_id: String,
    inner: Mutex<Inner>,
}

impl Default for NativeRules {
    fn default() -> Self {
        NativeRules {
            active: AtomicBool::new(false),
            boot_id: uuid::Uuid::new_v4().simple().to_string(),
            inner: Mutex::new(Inner { next_seq: 1, ..Inner::default() }),
        }
    }
}

/// The 365 error of an operation refused by `rule`.
pub fn refusal(rule: &NodeRule, running: usize) -> CommandError {
    CommandError::new(
        REFUSED_CODE,
        REFUSED_CODE_NAME,
        format!(
            "operation refused by kill-op rule {}: {running} matching operations already running \
             (max_concurrency {}); nothing of it was executed",
            rule.id, rule.max_concurrency
        ),
    )
}

/// Whether the command of `entry` needs no authentication (never subject to rules).
fn exempt(entry: &OpEntry) -> bool {
    crate::cmd::table::lookup(&entry.command_name).is_none_or(|c| !c.requires_auth())
}

impl NativeRules {
    /// Replaces the rule set (`None` clears it) and re-evaluates the running operations.
    pub fn install(&self, registry: &Arc<OpRegistry>, set: Option<RuleSet>, host: &str) {
        let mut inner = self.inner.lock();
        inner.install += 1;
        inner.counts = vec![0; set.as_ref().map_or(0, |s| s.rules.len())];
        let active = set.as_ref().is_some_and(|s| !s.rules.is_empty());
        inner.set = set.map(Arc::new);
        inner.host = host.to_owned();
        inner.runtime = tokio::runtime::Handle::try_current().ok();
        self.active.store(active, Ordering::SeqCst);
        for entry in registry.snapshot() {
            let mut st = entry.rules.lock();
            if let Some(t) = st.timer.take() {
                t.abort();
            }
            *st = OpRules::default();
            drop(st);
            entry.awaiting_plan.store(false, Ordering::Release);
            // Registered but not yet admitted: its own admission evaluates it.
            if active && entry.admitted.load(Ordering::SeqCst) {
                self.evaluate(&mut inner, registry, &entry, true);
            }
        }
    }

    /// The ids of the installed rules, in order.
    pub fn rule_ids(&self) -> Vec<String> {
        self.inner
            .lock()
            .set
            .as_ref()
            .map(|s| s.rules.iter().map(|r| r.id.clone()).collect())
            .unwrap_or_default()
    }

    /// The generation installed, if any.
    pub fn generation(&self) -> Option<i64> {
        self.inner.lock().set.as_ref().map(|s| s.generation)
    }

    /// Admits a just-registered operation: `Err` with the refusal when a rule's
    /// `max_concurrency` refuses it.
    pub fn admit(&self, registry: &Arc<OpRegistry>, entry: &Arc<OpEntry>) -> Result<(), CommandError> {
        entry.admitted.store(true, Ordering::SeqCst);
        if !self.active.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut inner = self.inner.lock();
        match self.evaluate(&mut inner, registry, entry, false) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The plan summary of `entry` was set: decides the rules waiting for it.
    pub fn on_plan(&self, registry: &Arc<OpRegistry>, entry: &Arc<OpEntry>) {
        let mut inner = self.inner.lock();
        let Some(set) = inner.set.clone() else { return };
        let mut st = entry.rules.lock();
        if st.install != inner.install || st.pending.is_empty() {
            return;
        }
        let plan = entry.plan_summary.lock().clone().unwrap_or_default();
        let client = entry.conn.client.to_string();
        let view = view_of(entry, &client, &plan);
        let pending = std::mem::take(&mut st.pending);
        let matched: Vec<usize> =
            pending.into_iter().filter(|i| plan_matches(&set.rules[*i], &view)).collect();
        if let Some(e) = self.apply(&mut inner, &set, registry, entry, &mut st, &matched, false) {
            entry.state.refuse(e);
        }
    }

    /// The operation ended: its slots are free.
    pub fn release(&self, entry: &OpEntry) {
        {
            let mut st = entry.rules.lock();
            if let Some(t) = st.timer.take() {
                t.abort();
            }
            if st.held.is_empty() {
                return;
            }
        }
        let mut inner = self.inner.lock();
        let st = entry.rules.lock();
        if st.install == inner.install {
            for i in &st.held {
                if let Some(c) = inner.counts.get_mut(*i) {
                    *c = c.saturating_sub(1);
                }
            }
        }
    }

    /// Evaluates `entry` under the current set (once per install): `Some` refusal for an
    /// operation being admitted that a rule refuses.
    fn evaluate(
        &self,
        inner: &mut Inner,
        registry: &Arc<OpRegistry>,
        entry: &Arc<OpEntry>,
        running: bool,
    ) -> Option<CommandError> {
        let set = inner.set.clone()?;
        let mut st = entry.rules.lock();
        if st.install == inner.install {
            return None;
        }
        st.install = inner.install;
        if exempt(entry) || set.rails.protection(entry.conn.app_name().as_deref(), &entry.users).is_some() {
            return None;
        }
        let plan = entry.plan_summary.lock().clone();
        let client = entry.conn.client.to_string();
        let view = view_of(entry, &client, plan.as_deref().unwrap_or(""));
        let mut matched = Vec::new();
        for (i, rule) in set.rules.iter().enumerate() {
            if !matches_without_plan(rule, &view) {
                continue;
            }
            if plan.is_none() && needs_plan(rule, &view) {
                st.pending.push(i);
            } else if plan_matches(rule, &view) {
                matched.push(i);
            }
        }
        if !st.pending.is_empty() {
            entry.awaiting_plan.store(true, Ordering::Release);
        }
        self.apply(inner, &set, registry, entry, &mut st, &matched, running)
    }

    /// Applies the rules `matched` (indices, in order) to `entry`: counts it, refuses (or kills,
    /// when `running`) it over a `max_concurrency`, arms its `secs_running` deadlines.
    #[expect(clippy::too_many_arguments, reason = "the lock guards are threaded through")]
    fn apply(
        &self,
        inner: &mut Inner,
        set: &Arc<RuleSet>,
        registry: &Arc<OpRegistry>,
        entry: &Arc<OpEntry>,
        st: &mut OpRules,
        matched: &[usize],
        running: bool,
    ) -> Option<CommandError> {
        let mut counted = Vec::new();
        let mut refused = None;
        for &i in matched {
            let rule = &set.rules[i];
            let cap = usize::try_from(rule.max_concurrency).unwrap_or(0);
            let current = inner.counts.get(i).copied().unwrap_or(0);
            if cap > 0 && current >= cap {
                let err = refusal(rule, current);
                let op = crate::cmd::currentop::op_doc(&inner.host, entry);
                if rule.observe {
                    push_event(inner, rule, "observed", "max_concurrency", op, Some(&err));
                } else if running {
                    push_event(inner, rule, "killed", "max_concurrency", op, None);
                    refused = Some(None);
                } else {
                    push_event(inner, rule, "refused", "max_concurrency", op, Some(&err));
                    refused = Some(Some(err));
                }
                break;
            }
            counted.push(i);
        }
        if let Some(refusal) = refused {
            if refusal.is_none() {
                entry.state.kill(KILL_INTERRUPTED);
            }
            return refusal;
        }
        for &i in &counted {
            if let Some(c) = inner.counts.get_mut(i) {
                *c += 1;
            }
        }
        st.held.extend(counted);
        for &i in matched {
            let secs = u64::try_from(set.rules[i].secs_running).unwrap_or(0);
            if secs > 0 {
                st.deadlines.push((entry.started + Duration::from_secs(secs), i));
            }
        }
        if !st.deadlines.is_empty() {
            st.deadlines.sort_unstable();
            if let Some(t) = st.timer.take() {
                t.abort();
            }
            if let Some(rt) = &inner.runtime {
                let deadlines = st.deadlines.clone();
                let (weak, opid, install) = (Arc::downgrade(registry), entry.opid, inner.install);
                st.timer = Some(rt.spawn(run_deadlines(weak, opid, install, deadlines)).abort_handle());
            }
        }
        None
    }

    /// A `secs_running` deadline of rule `index` passed for operation `opid`.
    fn deadline_passed(&self, registry: &Arc<OpRegistry>, opid: i32, install: u64, index: usize) {
        let mut inner = self.inner.lock();
        if inner.install != install {
            return;
        }
        let Some(set) = inner.set.clone() else { return };
        let Some(entry) = registry.get(opid) else { return };
        if entry.state.killed() {
            return;
        }
        let rule = &set.rules[index];
        let op = crate::cmd::currentop::op_doc(&inner.host, &entry);
        if rule.observe {
            push_event(&mut inner, rule, "observed", "secs_running", op, None);
        } else {
            entry.state.kill(KILL_INTERRUPTED);
            push_event(&mut inner, rule, "killed", "secs_running", op, None);
        }
    }

    /// Drops the events up to `ack` (this boot's sequence numbers) and answers the next ones.
    pub fn read(&self, ack: Option<i64>) -> EventBatch {
        let mut inner = self.inner.lock();
        if let Some(ack) = ack {
            while inner.events.front().is_some_and(|e| e.get_i64("seq").is_ok_and(|s| s <= ack)) {
                inner.events.pop_front();
            }
        }
        let events: Vec<Document> = inner.events.iter().take(MAX_EVENTS_PER_REPLY).cloned().collect();
        EventBatch {
            generation: inner.set.as_ref().map(|s| s.generation),
            remaining: inner.events.len() - events.len(),
            events,
            dropped: inner.dropped,
        }
    }
}

fn view_of<'a>(entry: &'a OpEntry, client: &'a str, plan: &'a str) -> OpView<'a> {
    OpView {
        op_type: entry.op,
        namespace: &entry.ns,
        client,
        plan_summary: plan,
        is_aggregate: entry.command_name == "aggregate",
    }
}

fn push_event(
    inner: &mut Inner,
    rule: &NodeRule,
    action: &str,
    limit: &str,
    op: Document,
    error: Option<&CommandError>,
) {
    if inner.events.len() >= MAX_EVENTS {
        inner.dropped += 1;
        tracing::warn!(rule_id = %rule.id, action, "kill-op rule event dropped: the queue is full");
        return;
    }
    let seq = inner.next_seq;
    inner.next_seq += 1;
    let mut e = doc! {
        "seq": seq, "at": bson::DateTime::now(), "ruleId": &rule.id,
        "mode": if rule.observe { "observe" } else { "kill" },
        "action": action, "limit": limit, "rule": rule.to_doc(), "op": op,
    };
    if let Some(err) = error {
        e.insert(
            "error",
            doc! {"code": err.code, "codeName": err.code_name.as_ref(), "errmsg": &err.message},
        );
    }
    tracing::info!(rule_id = %rule.id, action, limit, seq, "kill-op rule applied on the node");
    inner.events.push_back(e);
}

async fn run_deadlines(
    registry: Weak<OpRegistry>,
    opid: i32,
    install: u64,
    deadlines: Vec<(Instant, usize)>,
) {
    for (at, index) in deadlines {
        tokio::time::sleep_until(at.into()).await;
        let Some(reg) = registry.upgrade() else { return };
        reg.rules.deadline_passed(&reg, opid, install, index);
    }
}

/// Reads a rule set's wire form (`set` of `docplaneKillOpRules`); every field required, none
/// unknown.
pub fn parse_set(set: &Document, control_users: Vec<UserName>) -> Result<RuleSet, CommandError> {
    const FIELDS: &[&str] = &["generation", "rules", "protectedUsers", "protectedAppNames", "controlAppName"];
    known(set, "docplaneKillOpRules.set", FIELDS)?;
    let generation = int_field(set, "docplaneKillOpRules.set", "generation")?;
    let rules = match set.get("rules") {
        Some(Bson::Array(a)) => a,
        Some(other) => return Err(wrong_type("docplaneKillOpRules.set.rules", other, "array")),
        None => return Err(missing("docplaneKillOpRules.set.rules")),
    };
    if rules.len() > MAX_RULES {
        return Err(CommandError::bad_value(format!("at most {MAX_RULES} rules, not {}", rules.len())));
    }
    let rules = rules
        .iter()
        .map(|r| match r {
            Bson::Document(d) => parse_rule(d),
            other => Err(wrong_type("docplaneKillOpRules.set.rules", other, "object")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let control_app_name = str_field(set, "docplaneKillOpRules.set", "controlAppName")?.to_owned();
    if control_app_name.is_empty() {
        return Err(CommandError::bad_value("controlAppName must not be empty"));
    }
    Ok(RuleSet {
        generation,
        rules,
        rails: Rails {
            protected_users: strings(set, "docplaneKillOpRules.set", "protectedUsers")?,
            protected_app_names: strings(set, "docplaneKillOpRules.set", "protectedAppNames")?,
            control_app_name,
            control_users,
        },
    })
}

fn parse_rule(d: &Document) -> Result<NodeRule, CommandError> {
    const P: &str = "docplaneKillOpRules.set.rules";
    const FIELDS: &[&str] = &[
        "id",
        "operationTypes",
        "namespaces",
        "clientIps",
        "planSummary",
        "maxConcurrency",
        "secsRunning",
        "mode",
    ];
    known(d, P, FIELDS)?;
    let id = str_field(d, P, "id")?.to_owned();
    if id.is_empty() {
        return Err(CommandError::bad_value("a rule's id must not be empty"));
    }
    let operation_types = strings(d, P, "operationTypes")?;
    if let Some(bad) = operation_types.iter().find(|t| !RULE_OP_TYPES.contains(&t.as_str())) {
        return Err(CommandError::bad_value(format!("rule {id}: unknown operation type {bad:?}")));
    }
    let plan_summary = str_field(d, P, "planSummary")?.to_owned();
    if !plan_summary.is_empty() && !RULE_PLAN_SUMMARIES.contains(&plan_summary.as_str()) {
        return Err(CommandError::bad_value(format!("rule {id}: unknown plan summary {plan_summary:?}")));
    }
    let max_concurrency = int_field(d, P, "maxConcurrency")?;
    let secs_running = int_field(d, P, "secsRunning")?;
    let observe = match str_field(d, P, "mode")? {
        "kill" => false,
        "observe" => true,
        other => {
            return Err(CommandError::bad_value(format!(
                "rule {id}: mode must be \"kill\" or \"observe\", not {other:?}"
            )));
        }
    };
    Ok(NodeRule {
        id,
        operation_types,
        namespaces: strings(d, P, "namespaces")?,
        client_ips: strings(d, P, "clientIps")?,
        plan_summary,
        max_concurrency,
        secs_running,
        observe,
    })
}

fn known(d: &Document, path: &str, fields: &[&str]) -> Result<(), CommandError> {
    match d.keys().find(|k| !fields.contains(&k.as_str())) {
        Some(k) => {
            Err(CommandError::location(40415, format!("BSON field '{path}.{k}' is an unknown field.")))
        }
        None => Ok(()),
    }
}

fn missing(path: &str) -> CommandError {
    CommandError::location(40414, format!("BSON field '{path}' is missing but a required field"))
}

fn wrong_type(path: &str, v: &Bson, want: &str) -> CommandError {
    CommandError::type_mismatch(format!(
        "BSON field '{path}' is the wrong type '{}', expected type '{want}'",
        crate::cmd::util::type_name(v)
    ))
}

fn str_field<'a>(d: &'a Document, path: &str, key: &str) -> Result<&'a str, CommandError> {
    match d.get(key) {
        Some(Bson::String(s)) => Ok(s),
        Some(other) => Err(wrong_type(&format!("{path}.{key}"), other, "string")),
        None => Err(missing(&format!("{path}.{key}"))),
    }
}

/// A non-negative integer.
fn int_field(d: &Document, path: &str, key: &str) -> Result<i64, CommandError> {
    let n = match d.get(key) {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        Some(other) => return Err(wrong_type(&format!("{path}.{key}"), other, "long")),
        None => return Err(missing(&format!("{path}.{key}"))),
    };
    if n < 0 {
        return Err(CommandError::bad_value(format!("{path}.{key} must not be negative")));
    }
    Ok(n)
}

fn strings(d: &Document, path: &str, key: &str) -> Result<Vec<String>, CommandError> {
    match d.get(key) {
        Some(Bson::Array(a)) => a
            .iter()
            .map(|v| match v {
                Bson::String(s) => Ok(s.clone()),
                other => Err(wrong_type(&format!("{path}.{key}"), other, "string")),
            })
            .collect(),
        Some(other) => Err(wrong_type(&format!("{path}.{key}"), other, "array")),
        None => Err(missing(&format!("{path}.{key}"))),
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn rule() -> NodeRule {
        NodeRule {
            id: "r".into(),
            operation_types: vec!["query".into(), "command".into()],
            namespaces: vec![],
            client_ips: vec![],
            plan_summary: String::new(),
            max_concurrency: 0,
            secs_running: 0,
            observe: false,
        }
    }

    #[test]
    fn criteria_match_any_of_their_values() {
        let op = OpView {
            op_type: "query",
            namespace: "shop.orders",
            client: "10.0.0.5:41000",
            plan_summary: "IXSCAN { a: 1 }",
            is_aggregate: false,
        };
        let mut k = rule();
        assert!(matches(&k, &op));
        k.namespaces = vec!["sho".into()];
        assert!(!matches(&k, &op));
        k.namespaces = vec!["shop".into()];
        k.client_ips = vec!["10.0.0.50".into()];
        assert!(!matches(&k, &op));
        k.client_ips = vec!["10.0.0.5".into()];
        k.plan_summary = "IXSCAN".into();
        assert!(matches(&k, &op) && needs_plan(&k, &op));
        k.plan_summary = "AGGREGATE".into();
        assert!(!matches(&k, &op));
        let agg = OpView { is_aggregate: true, plan_summary: "", ..op };
        assert!(matches(&k, &agg) && !needs_plan(&k, &agg));
    }

    #[test]
    fn rails_protect_docplane_cluster_members_users_and_apps() {
        let root = vec![UserName::new("root", "admin")];
        let rails = Rails {
            protected_users: vec!["backup@admin".into()],
            protected_app_names: vec!["nightly".into()],
            control_app_name: "docplane-control".into(),
            control_users: root.clone(),
        };
        assert_eq!(rails.protection(Some("docplane-control"), &root), Some("docplane"));
        // The application name alone is not docplane's.
        assert_eq!(rails.protection(Some("docplane-control"), &[UserName::new("app", "admin")]), None);
        assert_eq!(rails.protection(None, &[UserName::new("__system", "local")]), Some("cluster member"));
        assert_eq!(rails.protection(None, &[UserName::new("backup", "admin")]), Some("protected user"));
        assert_eq!(rails.protection(None, &[UserName::new("backup", "shop")]), None);
        assert_eq!(rails.protection(Some("nightly"), &root), Some("protected application"));
        assert_eq!(rails.protection(Some("Nightly"), &root), None);
    }

    #[test]
    fn a_set_is_parsed_strictly() {
        let rule = doc! {"id": "r1", "operationTypes": ["command"], "namespaces": ["db"], "clientIps": [],
        "planSummary": "", "maxConcurrency": 2_i64, "secsRunning": 0_i64, "mode": "kill"};
        let set = |r: Document| {
            doc! {"generation": 7_i64, "rules": [r], "protectedUsers": [], "protectedAppNames": ["a"],
            "controlAppName": "docplane-control"}
        };
        let parsed = parse_set(&set(rule.clone()), vec![]).unwrap();
        assert_eq!(parsed.generation, 7);
        assert_eq!(parsed.rules[0].max_concurrency, 2);
        assert_eq!(parsed.rails.protected_app_names, vec!["a".to_owned()]);
        let code = |d: Document| parse_set(&d, vec![]).unwrap_err().code;
        let mut extra = rule.clone();
        extra.insert("dryRun", true);
        assert_eq!(code(set(extra)), 40415);
        let mut s = set(rule.clone());
        s.insert("extra", 1);
        assert_eq!(code(s), 40415);
        let mut s = set(rule.clone());
        s.remove("protectedUsers");
        assert_eq!(code(s), 40414);
        for (k, v) in [
            ("mode", Bson::String("enforce".into())),
            ("operationTypes", Bson::Array(vec!["none".into()])),
            ("planSummary", Bson::String("IXSCAN".into())),
            ("maxConcurrency", Bson::Int64(-1)),
        ] {
            let mut r = rule.clone();
            r.insert(k, v);
            assert_eq!(code(set(r)), 2, "{k}");
        }
        let mut r = rule;
        r.insert("secsRunning", "2");
        assert_eq!(code(set(r)), 14);
    }
}
