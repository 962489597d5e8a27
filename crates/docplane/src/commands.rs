//! What each subcommand does. Client commands talk HTTP through [`crate::client`]; server commands start
//! the library servers through [`crate::servers`].

use std::io::Read;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::output::{Output, table};
use crate::client::profiles::{self, Credentials, Profile, ProfileFile};
use crate::client::{ApiClient, decode};
use crate::{AuditCommand, ClientCommon, Command, InstancesCommand, LoginArgs, SessionsCommand};

pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Up(args) => crate::servers::up(args).await,
        Command::Serve(args) => crate::servers::serve(args).await,
        Command::Node(args) => crate::servers::node(args).await,
        Command::Login(args) => login(args).await,
        Command::Instances(InstancesCommand::List { common, id, name, mode, offset, limit }) => {
            let client = client_for(&common)?;
            let mut query = Vec::new();
            push(&mut query, "id", id);
            push(&mut query, "name", name);
            push(&mut query, "mode", mode);
            push(&mut query, "offset", offset);
            push(&mut query, "limit", limit);
            let path = format!("/v3/{}/instances", client.project_id());
            let body = client.call(Method::GET, &path, &query, None).await?;
            print_instances(&body, common.output)
        }
        Command::Sessions(SessionsCommand::List {
            common,
            node,
            op_type,
            namespace,
            plan_summary,
            min_cost_time,
            limit,
            offset,
        }) => {
            let client = client_for(&common)?;
            let mut query = Vec::new();
            push(&mut query, "offset", offset);
            push(&mut query, "limit", limit);
            push(&mut query, "plan_summary", plan_summary);
            push(&mut query, "type", op_type);
            push(&mut query, "namespace", namespace);
            push(&mut query, "cost_time", min_cost_time);
            let path = format!("/v3/{}/nodes/{}/sessions", client.project_id(), node);
            let body = client.call(Method::GET, &path, &query, None).await?;
            print_sessions(&body, common.output)
        }
        Command::Sessions(SessionsCommand::Kill { common, node, sessions }) => {
            let client = client_for(&common)?;
            let path = format!("/v3/{}/nodes/{}/session", client.project_id(), node);
            let body = client.call(Method::POST, &path, &[], Some(&json!({ "sessions": sessions }))).await?;
            match common.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&body)?),
                Output::Table => println!("killed {} session(s) on node {node}", sessions.len()),
            }
            Ok(())
        }
        Command::Audit(AuditCommand::List { common, from, to, node, principal, outcome, limit, offset }) => {
            let client = client_for(&common)?;
            let mut query = Vec::new();
            push(&mut query, "from", from);
            push(&mut query, "to", to);
            push(&mut query, "node_id", node);
            push(&mut query, "principal", principal);
            push(&mut query, "outcome", outcome);
            push(&mut query, "offset", offset);
            push(&mut query, "limit", limit);
            let path = format!("/v3/{}/kill-records", client.project_id());
            let body = client.call(Method::GET, &path, &query, None).await?;
            print_kill_records(&body, common.output)
        }
        Command::Audit(AuditCommand::Verify { common }) => {
            let client = client_for(&common)?;
            let path = format!("/v3/{}/kill-records/verify", client.project_id());
            let body = client.call(Method::GET, &path, &[], None).await?;
            if common.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                for p in body["problems"].as_array().into_iter().flatten() {
                    println!("seq {}: {}", p["seq"], p["problem"].as_str().unwrap_or(""));
                }
                println!(
                    "{} entries checked (head {}, pruned through {}): {}",
                    body["entries"],
                    body["head_seq"],
                    body["base_seq"],
                    if body["ok"] == true { "chain intact" } else { "CHAIN BROKEN" }
                );
            }
            anyhow::ensure!(body["ok"] == true, "the kill-record chain does not verify");
            Ok(())
        }
    }
}

fn print_kill_records(body: &Value, output: Output) -> Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(body)?);
        return Ok(());
    }
    let rows: Vec<Value> = body["records"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut r| {
            let at = r["at"].as_i64().and_then(chrono::DateTime::from_timestamp_millis);
            r["time"] = Value::String(at.map(|t| t.to_rfc3339()).unwrap_or_default());
            r["ids"] = Value::String(
                r["session_ids"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
            );
            r
        })
        .collect();
    let cols = [
        ("TIME", "time"),
        ("ID", "id"),
        ("PRINCIPAL", "principal"),
        ("SOURCE", "source"),
        ("NODE", "node_id"),
        ("SESSIONS", "ids"),
        ("OUTCOME", "outcome"),
        ("REQUEST", "request_id"),
    ];
    print!("{}", table(&cols, &rows, 40));
    println!("{} of {} record(s)", rows.len(), body["total_count"]);
    Ok(())
}

fn push(query: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<impl ToString>) {
    if let Some(v) = value {
        query.push((key, v.to_string()));
    }
}

fn client_for(common: &ClientCommon) -> Result<ApiClient> {
    let path = profiles::profiles_path()?;
    let file = ProfileFile::load(&path)?;
    let profile = file.get(&common.profile)?.clone();
    if let Credentials::Token { expires_at, .. } = &profile.credentials
        && let Ok(at) = chrono::DateTime::parse_from_rfc3339(expires_at)
        && at < chrono::Utc::now()
    {
        bail!(
            "the token of profile '{}' expired at {expires_at}: run `docplane login` again",
            common.profile
        );
    }
    ApiClient::new(profile)
}

/// The fields of `docplane up`'s bootstrap.json that a login needs.
#[derive(serde::Deserialize)]
struct BootstrapFile {
    endpoint: String,
    project_id: String,
    domain_name: String,
    user_name: String,
    password: String,
}

async fn login(args: LoginArgs) -> Result<()> {
    let path = profiles::profiles_path()?;
    let mut file = ProfileFile::load(&path)?;
    let profile = if let Some(boot) = &args.bootstrap {
        let text = std::fs::read_to_string(boot).with_context(|| format!("reading {}", boot.display()))?;
        let b: BootstrapFile =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", boot.display()))?;
        let scope = json!({ "id": b.project_id });
        let (token, expires_at, project_id) =
            password_token(&b.endpoint, &b.domain_name, &b.user_name, &b.password, scope).await?;
        Profile { endpoint: b.endpoint, project_id, credentials: Credentials::Token { token, expires_at } }
    } else {
        let endpoint = args.endpoint.clone().context("--endpoint (or DOCPLANE_ENDPOINT) is required")?;
        if let (Some(ak), Some(sk)) = (args.ak.clone(), args.sk.clone()) {
            let project_id = args.project_id.clone().context("an AK/SK profile needs --project-id")?;
            Profile { endpoint, project_id, credentials: Credentials::Aksk { ak, sk } }
        } else {
            let domain = args.domain.clone().context("--domain is required")?;
            let user = args.user.clone().context("--user is required")?;
            let password = match (&args.password, args.password_stdin) {
                (_, true) => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s.trim_end_matches(['\r', '\n']).to_string()
                }
                (Some(p), false) => p.clone(),
                (None, false) => {
                    bail!("give the password with DOCPLANE_PASSWORD, --password or --password-stdin")
                }
            };
            let scope = match (&args.project_id, &args.project_name) {
                (Some(id), _) => json!({ "id": id }),
                (None, Some(name)) => json!({ "name": name, "domain": { "name": domain } }),
                (None, None) => bail!("give --project-id or --project-name"),
            };
            let (token, expires_at, project_id) =
                password_token(&endpoint, &domain, &user, &password, scope).await?;
            Profile { endpoint, project_id, credentials: Credentials::Token { token, expires_at } }
        }
    };
    let kind = match profile.credentials {
        Credentials::Token { .. } => "token",
        Credentials::Aksk { .. } => "AK/SK",
    };
    let summary = json!({ "profile": args.common.profile, "endpoint": profile.endpoint,
                          "project_id": profile.project_id, "auth": kind });
    file.profiles.insert(args.common.profile.clone(), profile);
    file.save(&path)?;
    match args.common.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        Output::Table => println!(
            "saved {kind} profile '{}' for project {} in {}",
            args.common.profile,
            summary["project_id"].as_str().unwrap_or("?"),
            path.display()
        ),
    }
    Ok(())
}

/// `POST /v3/auth/tokens` with a password identity; returns (token, expires_at, project id).
pub async fn password_token(
    endpoint: &str,
    domain: &str,
    user: &str,
    password: &str,
    project_scope: Value,
) -> Result<(String, String, String)> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "password": password, "domain": {"name": domain}}}},
        "scope": {"project": project_scope}}});
    let url = format!("{}/v3/auth/tokens", endpoint.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("calling {endpoint}"))?;
    let token = resp.headers().get("X-Subject-Token").and_then(|v| v.to_str().ok()).map(str::to_string);
    let json = decode(resp).await?;
    let token = token.context("the endpoint answered without an X-Subject-Token header")?;
    let expires_at = json["token"]["expires_at"].as_str().unwrap_or_default().to_string();
    let project_id = json["token"]["project"]["id"].as_str().context("token has no project")?.to_string();
    Ok((token, expires_at, project_id))
}

fn print_instances(body: &Value, output: Output) -> Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(body)?);
        return Ok(());
    }
    // One row per node: the node ID is what `sessions` needs.
    let mut rows = Vec::new();
    for inst in body["instances"].as_array().into_iter().flatten() {
        for group in inst["groups"].as_array().into_iter().flatten() {
            for node in group["nodes"].as_array().into_iter().flatten() {
                rows.push(json!({
                    "instance": inst["name"], "mode": inst["mode"], "version": inst["datastore"]["version"],
                    "group": group["type"], "node_id": node["id"], "node": node["name"],
                    "role": node["role"], "status": node["status"], "address": node["private_ip"],
                }));
            }
        }
    }
    let cols = [
        ("INSTANCE", "instance"),
        ("MODE", "mode"),
        ("VERSION", "version"),
        ("GROUP", "group"),
        ("NODE ID", "node_id"),
        ("NODE", "node"),
        ("ROLE", "role"),
        ("STATUS", "status"),
        ("ADDRESS", "address"),
    ];
    print!("{}", table(&cols, &rows, 48));
    println!("{} instance(s)", body["total_count"]);
    Ok(())
}

fn print_sessions(body: &Value, output: Output) -> Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(body)?);
        return Ok(());
    }
    let rows = body["sessions"].as_array().cloned().unwrap_or_default();
    let cols = [
        ("ID", "id"),
        ("ACTIVE", "active"),
        ("TYPE", "type"),
        ("COST(us)", "cost_time"),
        ("NAMESPACE", "namespace"),
        ("PLAN", "plan_summary"),
        ("CLIENT", "client"),
        ("DESC", "description"),
        ("OPERATION", "operation"),
    ];
    print!("{}", table(&cols, &rows, 60));
    println!("{} of {} session(s)", rows.len(), body["total_count"]);
    Ok(())
}
