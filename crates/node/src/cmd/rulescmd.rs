//! `docplaneKillOpRules`, docplane's extension (docs/kill-op-rules.md): the control plane replaces the
//! node's kill-op rule set and reads (and acknowledges) the events of their enforcement
//! ([`crate::rules`]). Admin only; needs `inprog` and `killop` on the cluster.
//!
//! `{docplaneKillOpRules: 1, ack?: {bootId, seq}, set?: {generation, rules, protectedUsers,
//! protectedAppNames, controlAppName}}`: the events up to `ack.seq` are dropped (an `ack` naming
//! another boot of the node is refused: its events are gone with that process), then `set`
//! replaces the rule set (an empty `rules` clears it; the users of the calling connection are
//! docplane's, with `controlAppName`; the running operations are evaluated at once), then the
//! reply carries `bootId`, the installed `generation` (null when none) and `ruleIds`, the next
//! events (at most 1000), `dropped` (events lost to a
//! full queue since the node started) and `remaining` (events queued after those). Unknown
//! fields anywhere are refused (40415).

use bson::{Bson, doc};

use super::{CmdResult, Ctx, options, util};
use docplane_query::CommandError;

/// Runs `docplaneKillOpRules`.
pub fn kill_op_rules(ctx: &mut Ctx<'_>, cmd: &bson::Document) -> CmdResult {
    if let Some(k) = cmd.keys().find(|k| {
        !matches!(k.as_str(), "docplaneKillOpRules" | "set" | "ack")
            && !options::GENERIC.contains(&k.as_str())
    }) {
        return Err(CommandError::location(
            40415,
            format!("BSON field 'docplaneKillOpRules.{k}' is an unknown field."),
        ));
    }
    let rules = &ctx.state.ops.rules;
    let ack = match cmd.get("ack") {
        None => None,
        Some(Bson::Document(a)) => {
            if let Some(k) = a.keys().find(|k| !matches!(k.as_str(), "bootId" | "seq")) {
                return Err(CommandError::location(
                    40415,
                    format!("BSON field 'docplaneKillOpRules.ack.{k}' is an unknown field."),
                ));
            }
            let boot = util::req_str(a, "bootId")?;
            let seq = match a.get("seq") {
                Some(Bson::Int64(n)) => *n,
                Some(Bson::Int32(n)) => i64::from(*n),
                _ => return Err(CommandError::type_mismatch("docplaneKillOpRules.ack.seq must be a long")),
            };
            if boot != rules.boot_id {
                return Err(CommandError::bad_value(format!(
                    "ack names boot {boot}, but this node is boot {} (it restarted, and the events \
                     of that boot are gone): read again without ack",
                    rules.boot_id
                )));
            }
            Some(seq)
        }
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'docplaneKillOpRules.ack' is the wrong type '{}', expected type 'object'",
                util::type_name(other)
            )));
        }
    };
    let set = util::opt_doc(cmd, "set")?.map(|s| crate::rules::parse_set(s, ctx.users())).transpose()?;
    if let Some(set) = set {
        tracing::info!(
            generation = set.generation,
            rules = set.rules.len(),
            conn = ctx.conn.info.id,
            "kill-op rules installed"
        );
        rules.install(&ctx.state.ops, Some(set), &ctx.state.host);
    }
    let batch = rules.read(ack);
    Ok(doc! {
        "bootId": &rules.boot_id,
        "generation": rules.generation().map_or(Bson::Null, Bson::Int64),
        "ruleIds": rules.rule_ids(),
        "events": batch.events,
        "dropped": batch.dropped,
        "remaining": i64::try_from(batch.remaining).unwrap_or(i64::MAX),
    })
}
