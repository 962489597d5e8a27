//! `docplane rules create|list|enable|disable|delete` (the vendor's kill-op rule calls) and
//! `docplane connections` (its connection statistics), over the public HTTP API.

use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::ApiClient;
use super::output::{Output, table};
use crate::ClientCommon;

/// Kill-op rules of an instance: automatic kills of matching operations.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Create a rule (it starts disabled; `enable` it).
    #[command(after_help = "\
Examples:
  docplane rules create 2d8f...in02 --types query --namespace shop.orders --secs-running 30
  docplane rules create 2d8f...in02 --types query,getmore --plan COLLSCAN --max-concurrency 4
  docplane rules create 2d8f...in02 --types command --secs-running 60 --observe")]
    Create {
        #[command(flatten)]
        common: ClientCommon,
        /// Instance id (`docplane instances list`).
        #[arg(value_name = "INSTANCE_ID")]
        instance: String,
        /// Operation types it matches, comma-separated: insert update query command remove getmore.
        #[arg(long = "types", env = "DOCPLANE_RULE_TYPES", value_delimiter = ',', required = true)]
        operation_types: Vec<String>,
        /// A database (`db`) or a collection (`db.coll`); default any.
        #[arg(long, env = "DOCPLANE_RULE_NAMESPACE")]
        namespace: Option<String>,
        /// Client IPv4 addresses, comma-separated (at most 5); default any.
        #[arg(long = "clients", env = "DOCPLANE_RULE_CLIENTS", value_delimiter = ',')]
        client_ips: Vec<String>,
        /// A plan stage: COLLSCAN SORT_KEY_GENERATOR SKIP LIMIT GEO_NEAR_2DSPHERE GEO_NEAR_2D AGGREGATE OR.
        #[arg(long = "plan", env = "DOCPLANE_RULE_PLAN")]
        plan_summary: Option<String>,
        /// Kill matching operations running longer than this many seconds (2..=86400).
        #[arg(long = "secs-running", env = "DOCPLANE_RULE_SECS_RUNNING")]
        secs_running: Option<i64>,
        /// Keep at most this many matching operations; the newest beyond it are killed (1..=100000).
        #[arg(long = "max-concurrency", env = "DOCPLANE_RULE_MAX_CONCURRENCY")]
        max_concurrency: Option<i64>,
        /// Which nodes: replica (replica sets, single nodes), mongos, shard, mongos_shard.
        #[arg(long = "node-type", env = "DOCPLANE_RULE_NODE_TYPE", default_value = "replica")]
        node_type: String,
        /// Only record what would be killed (docplane's observe mode).
        #[arg(long, env = "DOCPLANE_RULE_OBSERVE")]
        observe: bool,
    },
    /// List an instance's rules.
    #[command(after_help = "\
Examples:
  docplane rules list 2d8f...in02
  docplane rules list 2d8f...in02 --status ENABLED -o json")]
    List {
        #[command(flatten)]
        common: ClientCommon,
        /// Instance id (`docplane instances list`).
        #[arg(value_name = "INSTANCE_ID")]
        instance: String,
        /// ENABLED or DISABLED.
        #[arg(long, env = "DOCPLANE_RULE_STATUS")]
        status: Option<String>,
    },
    /// Enable rules (all of the given ids or none).
    #[command(after_help = "\
Examples:
  docplane rules enable 2d8f...in02 5c1e...ru01 77aa...ru02")]
    Enable {
        #[command(flatten)]
        common: ClientCommon,
        /// Instance id (`docplane instances list`).
        #[arg(value_name = "INSTANCE_ID")]
        instance: String,
        /// Rule ids (`docplane rules list`).
        #[arg(value_name = "RULE_ID", required = true)]
        ids: Vec<String>,
    },
    /// Disable rules (all of the given ids or none).
    #[command(after_help = "\
Examples:
  docplane rules disable 2d8f...in02 5c1e...ru01")]
    Disable {
        #[command(flatten)]
        common: ClientCommon,
        /// Instance id (`docplane instances list`).
        #[arg(value_name = "INSTANCE_ID")]
        instance: String,
        /// Rule ids (`docplane rules list`).
        #[arg(value_name = "RULE_ID", required = true)]
        ids: Vec<String>,
    },
    /// Delete rules; only disabled ones can be deleted (the vendor's rule).
    #[command(after_help = "\
Examples:
  docplane rules disable 2d8f...in02 5c1e...ru01 && docplane rules delete 2d8f...in02 5c1e...ru01")]
    Delete {
        #[command(flatten)]
        common: ClientCommon,
        /// Instance id (`docplane instances list`).
        #[arg(value_name = "INSTANCE_ID")]
        instance: String,
        /// Rule ids (`docplane rules list`).
        #[arg(value_name = "RULE_ID", required = true)]
        ids: Vec<String>,
    },
}

/// The create body (pure).
#[expect(clippy::too_many_arguments, reason = "one argument per rule field")]
pub fn create_body(
    operation_types: &[String],
    namespace: Option<&str>,
    client_ips: &[String],
    plan_summary: Option<&str>,
    secs_running: Option<i64>,
    max_concurrency: Option<i64>,
    node_type: &str,
    observe: bool,
) -> Value {
    let mut body = json!({
        "operation_types": operation_types,
        "namespaces": namespace.map(|n| vec![n]).unwrap_or_default(),
        "client_ips": client_ips,
        "node_type": node_type,
        "mode": if observe { "observe" } else { "kill" },
    });
    if let Some(p) = plan_summary {
        body["plan_summary"] = json!(p);
    }
    if let Some(s) = secs_running {
        body["secs_running"] = json!(s);
    }
    if let Some(m) = max_concurrency {
        body["max_concurrency"] = json!(m);
    }
    body
}

fn rules_path(client: &ApiClient, instance: &str) -> String {
    format!("/v3/{}/instances/{instance}/kill-op-rule", client.project_id())
}

/// Runs a `rules` subcommand; `client_for` opens the profile.
pub async fn run(
    command: RulesCommand,
    client_for: impl Fn(&ClientCommon) -> Result<ApiClient>,
) -> Result<()> {
    match command {
        RulesCommand::Create {
            common,
            instance,
            operation_types,
            namespace,
            client_ips,
            plan_summary,
            secs_running,
            max_concurrency,
            node_type,
            observe,
        } => {
            let client = client_for(&common)?;
            let body = create_body(
                &operation_types,
                namespace.as_deref(),
                &client_ips,
                plan_summary.as_deref(),
                secs_running,
                max_concurrency,
                &node_type,
                observe,
            );
            let answer = client.call(Method::POST, &rules_path(&client, &instance), &[], Some(&body)).await?;
            match common.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
                Output::Table => println!(
                    "created rule {} (disabled; `docplane rules enable {instance} <id>` to enforce it)",
                    answer["id"].as_str().unwrap_or("?")
                ),
            }
            Ok(())
        }
        RulesCommand::List { common, instance, status } => {
            let client = client_for(&common)?;
            let query: Vec<(&str, String)> = status.into_iter().map(|s| ("status", s)).collect();
            let body = client.call(Method::GET, &rules_path(&client, &instance), &query, None).await?;
            if common.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(());
            }
            let rows = body["rules"].as_array().cloned().unwrap_or_default();
            let columns = [
                ("ID", "id"),
                ("STATUS", "status"),
                ("MODE", "mode"),
                ("TYPES", "operation_types"),
                ("NAMESPACES", "namespaces"),
                ("CLIENTS", "client_ips"),
                ("PLAN", "plan_summary"),
                ("SECS", "secs_running"),
                ("MAX_CONC", "max_concurrency"),
                ("NODES", "node_type"),
            ];
            print!("{}", table(&columns, &rows, 40));
            Ok(())
        }
        RulesCommand::Enable { common, instance, ids } => {
            change(client_for(&common)?, &common, &instance, ids, Some("enable")).await
        }
        RulesCommand::Disable { common, instance, ids } => {
            change(client_for(&common)?, &common, &instance, ids, Some("disable")).await
        }
        RulesCommand::Delete { common, instance, ids } => {
            change(client_for(&common)?, &common, &instance, ids, None).await
        }
    }
}

async fn change(
    client: ApiClient,
    common: &ClientCommon,
    instance: &str,
    ids: Vec<String>,
    action: Option<&str>,
) -> Result<()> {
    let path = rules_path(&client, instance);
    let (method, body, done) = match action {
        Some(a) => (Method::PUT, json!({"ids": ids, "action": a}), format!("{a}d")),
        None => (Method::DELETE, json!({"ids": ids}), "deleted".to_owned()),
    };
    let answer = client.call(method, &path, &[], Some(&body)).await?;
    match common.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        Output::Table => println!("{done} {} rule(s)", body["ids"].as_array().map_or(0, Vec::len)),
    }
    Ok(())
}

/// `docplane connections INSTANCE [--node ID]`.
pub async fn connections(
    client: ApiClient,
    output: Output,
    instance: &str,
    node: Option<String>,
) -> Result<()> {
    let path = format!("/v3/{}/instances/{instance}/conn-statistics", client.project_id());
    let query: Vec<(&str, String)> = node.into_iter().map(|n| ("node_id", n)).collect();
    let body = client.call(Method::GET, &path, &query, None).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for (side, key) in [("inner", "inner_connections"), ("outer", "outer_connections")] {
        for r in body[key].as_array().into_iter().flatten() {
            rows.push(json!({"side": side, "client_ip": r["client_ip"], "count": r["count"]}));
        }
    }
    print!("{}", table(&[("SIDE", "side"), ("CLIENT_IP", "client_ip"), ("CONNECTIONS", "count")], &rows, 40));
    println!(
        "total {} (inner {}, outer {})",
        body["total_connections"], body["total_inner_connections"], body["total_outer_connections"]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_has_the_vendor_fields() {
        let b = create_body(
            &["query".into()],
            Some("shop"),
            &[],
            Some("COLLSCAN"),
            Some(30),
            None,
            "replica",
            false,
        );
        assert_eq!(
            b,
            json!({"operation_types": ["query"], "namespaces": ["shop"], "client_ips": [], "node_type": "replica",
                   "mode": "kill", "plan_summary": "COLLSCAN", "secs_running": 30})
        );
        let b =
            create_body(&["insert".into()], None, &["10.0.0.5".into()], None, None, Some(3), "shard", true);
        assert_eq!(b["mode"], "observe");
        assert_eq!(b["namespaces"], json!([]));
        assert_eq!(b["max_concurrency"], 3);
        assert!(b.get("secs_running").is_none());
    }
}
