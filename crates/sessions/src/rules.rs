//! Kill-op rules (the vendor's automatic kills): the rule vocabulary, which operations a rule
//! matches, which of them it kills, and which nodes of an instance it applies to. Pure: the
//! enforcer (`docplane-api`) reads the rules and the node, [`crate::SessionService::enforce`]
//! reads the node's operations once and kills through the one kill pipeline.
//!
//! A rule matches an active operation (with an opid, not protected by the rails) when every set
//! criterion holds, each being "any of" its values:
//! - `operation_types`: the entry's `op` (`insert update query command remove getmore`);
//! - `namespaces`: `db` matches every namespace of that database (`db.anything`, and `db`
//!   itself), `db.coll` exactly that namespace;
//! - `client_ips`: the host part of the entry's `client` (any port);
//! - `plan_summary`: a stage of the entry's `planSummary` (`IXSCAN { a: 1 }` has `IXSCAN`);
//!   `AGGREGATE` matches an `aggregate` command.
//!
//! Of the matching operations (oldest first, by running time), [`victims`] kills those running
//! longer than `secs_running` (when set), then, of the rest, every one beyond the
//! `max_concurrency` oldest (when set): the newest are the surplus, as the vendor's console
//! describes a concurrency cap; the oldest keep running. Protected operations are neither killed
//! nor counted.
//!
//! On MongoDB 3.6+ the enforcer asks the node only for the entries a pass can need
//! ([`candidate_predicate`], a `$match` after `$currentOp`): every active operation with an opid
//! that matches at least one rule's criteria (for a rule with `secs_running` and no
//! `max_concurrency`, only those running longer than the limit: the others can neither be its
//! victims nor count), and every entry that makes a connection docplane's (a tagged read under
//! docplane's application name, which the rails need). The predicate may let through more than
//! that (it is a superset wherever an exact form would be costly or version-dependent); the pass
//! then applies the same rails and [`victims`] to what it got as it would to every entry, so the
//! victims are the same. MongoDB 3.4 is read whole and selected here.

use std::collections::HashSet;

use docplane_driver::ops::OWN_TAG_PREFIX;
use docplane_store::{GroupType, InstanceMode, KillOpRule};
use mongodb::bson::{Bson, Document, doc};

use crate::record::SessionRecord;
use crate::select;

/// The operation types a rule may name.
pub const RULE_OP_TYPES: &[&str] = &["insert", "update", "query", "command", "remove", "getmore"];
/// The plan summaries a rule may name.
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
/// The node types a rule may name.
pub const RULE_NODE_TYPES: &[&str] = &["mongos_shard", "mongos", "shard", "replica"];
/// The modes (docplane's extension).
pub const RULE_MODES: &[&str] = &["kill", "observe"];
/// Most operation types, namespaces and client IPs per rule.
pub const MAX_RULE_OP_TYPES: usize = 6;
pub const MAX_RULE_NAMESPACES: usize = 1;
pub const MAX_RULE_CLIENT_IPS: usize = 5;
/// Bounds of `max_concurrency` and `secs_running` when set (0 = no limit).
pub const MAX_CONCURRENCY_RANGE: (i64, i64) = (1, 100_000);
pub const SECS_RUNNING_RANGE: (i64, i64) = (2, 86_400);

/// Whether `value` is a rule namespace: a database name (`db`) or `db.coll`.
pub fn is_valid_rule_namespace(value: &str) -> bool {
    if value.contains('.') {
        return select::is_valid_namespace(value);
    }
    !value.is_empty()
        && value.len() <= 64
        && !value.contains(['/', '\\', ' ', '"', '$', '\0'])
        && !value.chars().any(char::is_control)
}

/// Whether `value` is a dotted-quad IPv4 address (the only kind the vendor accepts).
pub fn is_valid_ipv4(value: &str) -> bool {
    value.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Whether a rule of `node_type` applies to a node of `group` in an instance of `mode`:
/// `replica` to replica-set and single-node instances, `mongos` / `shard` to a cluster's mongos
/// / shard nodes, `mongos_shard` to both; never to config servers.
pub fn applies_to(node_type: &str, mode: InstanceMode, group: GroupType) -> bool {
    match (node_type, mode) {
        ("replica", InstanceMode::ReplicaSet | InstanceMode::Single) => true,
        ("mongos", InstanceMode::Sharding) => group == GroupType::Mongos,
        ("shard", InstanceMode::Sharding) => group == GroupType::Shard,
        ("mongos_shard", InstanceMode::Sharding) => matches!(group, GroupType::Mongos | GroupType::Shard),
        _ => false,
    }
}

/// Whether a rule of `node_type` can apply to any node of an instance of `mode`.
pub fn fits_mode(node_type: &str, mode: InstanceMode) -> bool {
    match mode {
        InstanceMode::ReplicaSet | InstanceMode::Single => node_type == "replica",
        InstanceMode::Sharding => matches!(node_type, "mongos" | "shard" | "mongos_shard"),
    }
}

/// One operation as a rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct RuleOp<'a> {
    pub record: &'a SessionRecord,
    /// Whether its command is an `aggregate` (for `plan_summary: AGGREGATE`).
    pub is_aggregate: bool,
}

impl<'a> RuleOp<'a> {
    /// The operation of a `$currentOp` entry.
    pub fn new(record: &'a SessionRecord, entry: &Document) -> Self {
        let is_aggregate = entry
            .get_document("command")
            .ok()
            .and_then(|c| c.keys().next())
            .is_some_and(|k| k == "aggregate");
        RuleOp { record, is_aggregate }
    }
}

fn host_of(client: &str) -> &str {
    match client.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => client,
    }
}

/// Whether `rule` matches the operation (its criteria only; activity and rails are the
/// caller's).
pub fn matches(rule: &KillOpRule, op: RuleOp<'_>) -> bool {
    let r = op.record;
    let type_ok = rule.operation_types.is_empty() || rule.operation_types.contains(&r.op_type);
    let ns_ok = rule.namespaces.is_empty()
        || rule.namespaces.iter().any(|n| {
            if n.contains('.') {
                r.namespace == *n
            } else {
                r.namespace == *n
                    || r.namespace.strip_prefix(n.as_str()).is_some_and(|rest| rest.starts_with('.'))
            }
        });
    let ip_ok = rule.client_ips.is_empty() || rule.client_ips.iter().any(|ip| host_of(&r.client) == ip);
    let plan_ok = rule.plan_summary.is_empty()
        || if rule.plan_summary == "AGGREGATE" {
            op.is_aggregate
                || r.plan_summary
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .any(|w| w == "AGGREGATE")
        } else {
            r.plan_summary
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|w| w.eq_ignore_ascii_case(&rule.plan_summary))
        };
    type_ok && ns_ok && ip_ok && plan_ok
}

/// Which of `ops` (each an eligible operation: active, with an opid, not protected) `rule`
/// kills, as indices into `ops`, oldest first. `skip` holds indices already claimed by an
/// earlier rule of the same pass: they are neither killed again nor counted.
pub fn victims(rule: &KillOpRule, ops: &[RuleOp<'_>], skip: &HashSet<usize>) -> Vec<usize> {
    let mut matching: Vec<usize> =
        (0..ops.len()).filter(|i| !skip.contains(i) && matches(rule, ops[*i])).collect();
    // Oldest first; equal running times by opid text, so the order is stable.
    matching.sort_by(|a, b| {
        let (ra, rb) = (ops[*a].record, ops[*b].record);
        rb.cost_time_us.cmp(&ra.cost_time_us).then_with(|| ra.id.cmp(&rb.id))
    });
    let limit_us = u64::try_from(rule.secs_running).unwrap_or(0).saturating_mul(1_000_000);
    let (mut out, rest): (Vec<usize>, Vec<usize>) =
        matching.into_iter().partition(|i| limit_us > 0 && ops[*i].record.cost_time_us > limit_us);
    let cap = usize::try_from(rule.max_concurrency).unwrap_or(0);
    if cap > 0 && rest.len() > cap {
        out.extend_from_slice(&rest[cap..]);
    }
    out
}

/// `{path: {$gte: prefix, $lt: <prefix with its last byte + 1>}}`: the strings that start with
/// `prefix` (BSON orders strings bytewise), without a regex. `prefix` must end in an ASCII byte
/// below 0x7f (every caller's ends in `.`, `:`).
fn starts_with(path: &str, prefix: &str) -> Document {
    let mut upper = prefix.to_owned();
    let last = upper.pop().map_or(0, |c| c as u32 + 1);
    upper.push(char::from_u32(last).unwrap_or('\u{7f}'));
    doc! {path: {"$gte": prefix, "$lt": upper}}
}

fn one_or_all(mut conjuncts: Vec<Document>) -> Document {
    match conjuncts.len() {
        0 => Document::new(),
        1 => conjuncts.remove(0),
        _ => doc! {"$and": conjuncts.into_iter().map(Bson::Document).collect::<Vec<_>>()},
    }
}

fn any_of(alternatives: Vec<Document>) -> Document {
    doc! {"$or": alternatives.into_iter().map(Bson::Document).collect::<Vec<_>>()}
}

/// A predicate every operation [`matches`] `rule` satisfies, and, when the rule has
/// `secs_running` but no `max_concurrency`, every operation it can kill (running longer than
/// the limit). A criterion the rule spells in a way the vocabulary does not allow (an empty
/// namespace or address, a `none` type, a plan summary that is not one word) is left out: the
/// predicate then lets more through, never less.
pub fn rule_predicate(rule: &KillOpRule) -> Document {
    let mut all = Vec::new();
    let types = &rule.operation_types;
    // `op` missing or not a string is `none` to the record: only `{op: {$in}}` for real types.
    if !types.is_empty() && !types.iter().any(|t| t == "none") {
        all.push(doc! {"op": {"$in": types.clone()}});
    }
    if !rule.namespaces.is_empty() && !rule.namespaces.iter().any(String::is_empty) {
        let mut alternatives = Vec::new();
        for n in &rule.namespaces {
            alternatives.push(doc! {"ns": n});
            if !n.contains('.') {
                alternatives.push(starts_with("ns", &format!("{n}.")));
            }
        }
        all.push(any_of(alternatives));
    }
    if !rule.client_ips.is_empty() && !rule.client_ips.iter().any(String::is_empty) {
        // `host_of` of `client` (or `client_s`): the address alone, or followed by `:port`.
        let mut alternatives = Vec::new();
        for field in ["client", "client_s"] {
            alternatives.push(doc! {field: {"$in": rule.client_ips.clone()}});
            for ip in &rule.client_ips {
                alternatives.push(starts_with(field, &format!("{ip}:")));
            }
        }
        all.push(any_of(alternatives));
    }
    if !rule.plan_summary.is_empty()
        && let Some(word) = crate::pushdown::word_pattern(&rule.plan_summary)
    {
        let in_plan = doc! {"planSummary": {"$regex": word}};
        if rule.plan_summary == "AGGREGATE" {
            all.push(any_of(vec![doc! {"command.aggregate": {"$exists": true}}, in_plan]));
        } else {
            all.push(in_plan);
        }
    }
    // Without a cap, an operation under the limit is neither killed nor counted. The running
    // time is `microsecs_running`, else `secs_running` (`SessionRecord::summary`): either above
    // the limit lets the entry through.
    if rule.max_concurrency <= 0
        && rule.secs_running > 0
        && let Some(limit_us) = rule.secs_running.checked_mul(1_000_000)
    {
        all.push(any_of(vec![
            doc! {"microsecs_running": {"$gt": limit_us}},
            doc! {"secs_running": {"$gt": rule.secs_running}},
        ]));
    }
    one_or_all(all)
}

/// The `$match` predicate of an enforcement pass of `rules` (module doc): active operations with
/// an opid matching at least one rule's [`rule_predicate`], and the entries that make a
/// connection docplane's (`app_name`'s tagged reads, as `service::own_connections` finds them).
pub fn candidate_predicate(rules: &[KillOpRule], app_name: &str) -> Document {
    let tag_fields = [
        "command.comment",
        "command.$comment",
        "query.comment",
        "query.$comment",
        "cursor.originatingCommand.comment",
        "cursor.originatingCommand.$comment",
    ];
    let tagged = any_of(tag_fields.iter().map(|f| starts_with(f, OWN_TAG_PREFIX)).collect());
    let under_app =
        any_of(vec![doc! {"appName": app_name}, doc! {"clientMetadata.application.name": app_name}]);
    let own = doc! {"$and": [tagged, under_app]};
    if rules.is_empty() {
        return own;
    }
    let ops = doc! {
        "active": true,
        "opid": {"$exists": true},
        "$or": rules.iter().map(|r| Bson::Document(rule_predicate(r))).collect::<Vec<_>>(),
    };
    any_of(vec![ops, own])
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn rec(id: &str, op: &str, ns: &str, client: &str, plan: &str, us: u64) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            active: true,
            operation: String::new(),
            op_type: op.into(),
            cost_time_us: us,
            plan_summary: plan.into(),
            host: String::new(),
            client: client.into(),
            description: String::new(),
            namespace: ns.into(),
            db: None,
            user: None,
            app_name: None,
            has_opid: true,
        }
    }

    fn rule(secs: i64, cap: i64) -> KillOpRule {
        KillOpRule {
            id: "r".into(),
            instance_id: "i".into(),
            operation_types: vec!["query".into(), "command".into()],
            namespaces: vec![],
            client_ips: vec![],
            plan_summary: String::new(),
            max_concurrency: cap,
            secs_running: secs,
            node_type: "replica".into(),
            status: "ENABLED".into(),
            mode: "kill".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn ops(records: &[SessionRecord]) -> Vec<RuleOp<'_>> {
        records.iter().map(|record| RuleOp { record, is_aggregate: false }).collect()
    }

    #[test]
    fn criteria_match_any_of_their_values() {
        let r = rec("1", "query", "shop.orders", "10.0.0.5:41000", "IXSCAN { a: 1 }", 0);
        let op = RuleOp { record: &r, is_aggregate: false };
        let mut k = rule(5, 0);
        assert!(matches(&k, op));
        k.operation_types = vec!["insert".into()];
        assert!(!matches(&k, op));
        k.operation_types = vec!["insert".into(), "query".into()];
        for (ns, hit) in
            [("shop", true), ("shop.orders", true), ("shop.order", false), ("sho", false), ("other", false)]
        {
            k.namespaces = vec![ns.into()];
            assert_eq!(matches(&k, op), hit, "{ns}");
        }
        k.namespaces = vec![];
        for (ip, hit) in [("10.0.0.5", true), ("10.0.0.50", false), ("10.0.0.6", false)] {
            k.client_ips = vec!["192.168.0.1".into(), ip.into()];
            assert_eq!(matches(&k, op), hit, "{ip}");
        }
        k.client_ips = vec![];
        k.plan_summary = "IXSCAN".into();
        assert!(matches(&k, op));
        k.plan_summary = "COLLSCAN".into();
        assert!(!matches(&k, op));
        k.plan_summary = "AGGREGATE".into();
        assert!(!matches(&k, op));
        assert!(matches(&k, RuleOp { record: &r, is_aggregate: true }));
    }

    #[test]
    fn secs_running_kills_the_longer_ones() {
        let records = [
            rec("1", "query", "a.b", "", "", 6_000_000),
            rec("2", "query", "a.b", "", "", 5_000_000),
            rec("3", "insert", "a.b", "", "", 9_000_000),
            rec("4", "command", "a.b", "", "", 5_000_001),
        ];
        let got: Vec<&str> = victims(&rule(5, 0), &ops(&records), &HashSet::new())
            .iter()
            .map(|i| records[*i].id.as_str())
            .collect();
        // Exactly 5 s is not longer than 5 s; the insert is not matched.
        assert_eq!(got, ["1", "4"]);
    }

    #[test]
    fn max_concurrency_kills_the_newest_beyond_the_cap() {
        let records: Vec<SessionRecord> =
            (1..=5).map(|i| rec(&i.to_string(), "query", "a.b", "", "", i * 1000)).collect();
        let got: Vec<&str> = victims(&rule(0, 2), &ops(&records), &HashSet::new())
            .iter()
            .map(|i| records[*i].id.as_str())
            .collect();
        // The two oldest (5, 4) keep running.
        assert_eq!(got, ["3", "2", "1"]);
        // Under the cap: nothing.
        assert!(victims(&rule(0, 5), &ops(&records), &HashSet::new()).is_empty());
        // Already claimed by an earlier rule: neither killed nor counted.
        let skip: HashSet<usize> = [4, 3].into();
        let got: Vec<&str> =
            victims(&rule(0, 2), &ops(&records), &skip).iter().map(|i| records[*i].id.as_str()).collect();
        assert_eq!(got, ["1"]);
    }

    #[test]
    fn both_limits_cap_what_survives_the_time_limit() {
        let records: Vec<SessionRecord> =
            (1..=4).map(|i| rec(&i.to_string(), "query", "a.b", "", "", i * 1_000_000)).collect();
        let mut got: Vec<&str> = victims(&rule(3, 1), &ops(&records), &HashSet::new())
            .iter()
            .map(|i| records[*i].id.as_str())
            .collect();
        got.sort_unstable();
        // 4 runs longer than 3 s; of 3, 2, 1 the oldest (3) stays.
        assert_eq!(got, ["1", "2", "4"]);
    }

    #[test]
    fn predicates_take_only_what_a_pass_can_need() {
        assert_eq!(starts_with("ns", "shop."), doc! {"ns": {"$gte": "shop.", "$lt": "shop/"}});
        assert_eq!(
            starts_with("client", "10.0.0.5:"),
            doc! {"client": {"$gte": "10.0.0.5:", "$lt": "10.0.0.5;"}}
        );
        let time =
            doc! {"$or": [{"microsecs_running": {"$gt": 5_000_000_i64}}, {"secs_running": {"$gt": 5_i64}}]};
        // Types only, and the time limit (no cap: the rest can neither be killed nor counted).
        assert_eq!(rule_predicate(&rule(5, 0)), doc! {"$and": [{"op": {"$in": ["query", "command"]}}, time]});
        // With a cap every matching operation counts: no time condition.
        assert_eq!(rule_predicate(&rule(5, 2)), doc! {"op": {"$in": ["query", "command"]}});
        let mut k = rule(0, 2);
        k.namespaces = vec!["shop".into()];
        k.plan_summary = "AGGREGATE".into();
        let p = rule_predicate(&k);
        let all = p.get_array("$and").unwrap();
        assert_eq!(
            all[1],
            Bson::Document(doc! {"$or": [{"ns": "shop"}, {"ns": {"$gte": "shop.", "$lt": "shop/"}}]})
        );
        assert!(all[2].as_document().unwrap().to_string().contains("command.aggregate"), "{p}");
        // Outside the vocabulary a criterion is dropped (more is read, never less).
        k.operation_types = vec!["none".into()];
        k.namespaces = vec![String::new()];
        k.plan_summary = "IX SCAN".into();
        assert_eq!(rule_predicate(&k), Document::new());
        // No rules: only the entries the rails need.
        let own = candidate_predicate(&[], "docplane-control");
        assert!(own.contains_key("$and") && own.to_string().contains("docplane;"), "{own}");
    }

    #[test]
    fn node_types() {
        use GroupType::{Config, Mongos, Replica, Shard};
        use InstanceMode::{ReplicaSet, Sharding};
        let single = InstanceMode::Single;
        assert!(applies_to("replica", single, GroupType::Single));
        assert!(applies_to("replica", ReplicaSet, Replica));
        assert!(!applies_to("replica", Sharding, Shard));
        assert!(applies_to("mongos", Sharding, Mongos) && !applies_to("mongos", Sharding, Shard));
        assert!(applies_to("shard", Sharding, Shard) && !applies_to("shard", Sharding, Mongos));
        assert!(applies_to("mongos_shard", Sharding, Mongos) && applies_to("mongos_shard", Sharding, Shard));
        assert!(!applies_to("mongos_shard", Sharding, Config));
        assert!(
            fits_mode("replica", single) && !fits_mode("mongos", ReplicaSet) && fits_mode("shard", Sharding)
        );
    }

    /// The embedded node applies rules itself with a port of [`matches`]
    /// (`docplane_node::rules`, which cannot depend on this crate): the two agree on every
    /// combination of criteria and operation here, and on the vocabulary and the user rail.
    #[test]
    fn the_nodes_port_matches_alike() {
        use docplane_node::auth::UserName;
        use docplane_node::rules as node;
        assert_eq!(node::RULE_OP_TYPES, RULE_OP_TYPES);
        assert_eq!(node::RULE_PLAN_SUMMARIES, RULE_PLAN_SUMMARIES);
        let types: [&[&str]; 3] = [&[], &["query"], &["insert", "command"]];
        let namespaces: [&[&str]; 5] = [&[], &["shop"], &["shop.orders"], &["sho"], &["shop.orders.x"]];
        let ips: [&[&str]; 3] = [&[], &["10.0.0.5"], &["10.0.0.50", "127.0.0.1"]];
        let plans = ["", "COLLSCAN", "IXSCAN", "AGGREGATE", "sort_key_generator", "OR"];
        let op_types = ["query", "command", "insert", "getmore"];
        let op_namespaces = ["shop.orders", "shop.$cmd", "shop", "shopping.x", "admin.$cmd"];
        let clients = ["10.0.0.5:41000", "127.0.0.1:1", "[::1]:5", "10.0.0.5"];
        let op_plans = ["", "COLLSCAN", "IXSCAN { a: 1 }", "SORT_KEY_GENERATOR", "OR IXSCAN { b: 1 }"];
        let mut checked = 0;
        for t in types {
            for n in namespaces {
                for ip in ips {
                    for plan in plans {
                        let mut ours = rule(0, 0);
                        ours.operation_types = t.iter().map(|s| (*s).to_owned()).collect();
                        ours.namespaces = n.iter().map(|s| (*s).to_owned()).collect();
                        ours.client_ips = ip.iter().map(|s| (*s).to_owned()).collect();
                        ours.plan_summary = plan.to_owned();
                        let theirs = node::NodeRule {
                            id: "r".into(),
                            operation_types: ours.operation_types.clone(),
                            namespaces: ours.namespaces.clone(),
                            client_ips: ours.client_ips.clone(),
                            plan_summary: ours.plan_summary.clone(),
                            max_concurrency: 0,
                            secs_running: 0,
                            observe: false,
                        };
                        for op in op_types {
                            for ns in op_namespaces {
                                for client in clients {
                                    for op_plan in op_plans {
                                        for aggregate in [false, true] {
                                            let r = rec("1", op, ns, client, op_plan, 0);
                                            let view = node::OpView {
                                                op_type: op,
                                                namespace: ns,
                                                client,
                                                plan_summary: op_plan,
                                                is_aggregate: aggregate,
                                            };
                                            assert_eq!(
                                                matches(
                                                    &ours,
                                                    RuleOp { record: &r, is_aggregate: aggregate }
                                                ),
                                                node::matches(&theirs, &view),
                                                "{ours:?} on {view:?}"
                                            );
                                            checked += 1;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 100_000);
        for (entry, user, db) in [
            ("app", "app", "admin"),
            ("app@admin", "app", "admin"),
            ("app@shop", "app", "admin"),
            ("a@b", "a@b", "x"),
            ("a@b@x", "a@b", "x"),
            ("app@", "app", ""),
            ("ap", "app", "admin"),
        ] {
            let ours = crate::rails::OpUser { user: user.into(), db: db.into() };
            assert_eq!(
                crate::rails::user_matches(entry, &ours),
                node::user_matches(entry, &UserName::new(user, db)),
                "{entry} {user}@{db}"
            );
        }
        assert_eq!(node::CLUSTER_USER, crate::rails::CLUSTER_USER);
    }

    #[test]
    fn vocabulary() {
        assert!(is_valid_rule_namespace("shop") && is_valid_rule_namespace("shop.orders"));
        assert!(
            !is_valid_rule_namespace("")
                && !is_valid_rule_namespace("a b")
                && !is_valid_rule_namespace("shop.")
        );
        assert!(
            is_valid_ipv4("10.0.0.5")
                && !is_valid_ipv4("::1")
                && !is_valid_ipv4("10.0.0")
                && !is_valid_ipv4("host")
        );
    }
}
