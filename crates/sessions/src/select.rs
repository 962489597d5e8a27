//! The vendor's session vocabulary and the pure selection core: which filter values are valid,
//! which records a filter matches, in what order, which page; and the all-or-nothing check that
//! a kill's ids name active operations.

use crate::error::{Result, SessionError};
use crate::ids::SessionId;
use crate::record::SessionRecord;

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
    /// The client: an address (`10.0.0.5`, `::1`) matching any port, or exactly `host:port`.
    /// Selector kills only; the vendor's list takes no such filter.
    pub client: Option<String>,
    /// An effective user's name (exact). Selector kills only.
    pub user: Option<String>,
    /// The client's application name (exact). Selector kills only.
    pub app_name: Option<String>,
}

/// The host part of `host:port` (`[v6]:port` and bare addresses too).
fn client_host(client: &str) -> &str {
    if let Some(rest) = client.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match client.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => client,
    }
}

/// Whether a `$currentOp` `client` matches a selector's `client`: the same `host:port`, or the
/// same host when the selector names no port.
pub fn client_matches(client: &str, wanted: &str) -> bool {
    client == wanted || (client_host(wanted) == wanted && client_host(client) == wanted)
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
            && self.client.as_deref().is_none_or(|c| client_matches(&record.client, c))
            && self.user.as_deref().is_none_or(|u| record.user.as_deref() == Some(u))
            && self.app_name.as_deref().is_none_or(|a| record.app_name.as_deref() == Some(a))
    }

    /// True when no filter is set (a selector kill refuses that: it would match everything).
    pub fn is_empty(&self) -> bool {
        *self == SessionFilter::default()
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
        return Err(SessionError::InvalidSessionIds(unknown));
    }
    if !inactive.is_empty() {
        return Err(SessionError::InactiveSessions(inactive));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
            app_name: None,
            has_opid: true,
        }
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
            Err(SessionError::InactiveSessions(vec!["2".into()]))
        );
        assert_eq!(
            check_killable(&ids(&[1, 7, 2]), &current),
            Err(SessionError::InvalidSessionIds(vec!["7".into()]))
        );
        let mut no_opid = rec("conn5", false, 0, "none", "", "");
        no_opid.has_opid = false;
        assert!(check_killable(&ids(&[5]), std::slice::from_ref(&no_opid)).is_err());
        assert_eq!(
            check_killable(&[SessionId::Idle("conn5".into())], &[no_opid]),
            Err(SessionError::InactiveSessions(vec!["conn5".into()]))
        );
        assert_eq!(
            check_killable(&[SessionId::Idle("conn6".into())], &current),
            Err(SessionError::InvalidSessionIds(vec!["conn6".into()]))
        );
    }
}
