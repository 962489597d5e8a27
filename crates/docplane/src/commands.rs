//! What each subcommand does. Client commands talk HTTP through [`crate::client`]; server commands start
//! the library servers through [`crate::servers`]. Everything they print goes through
//! [`crate::client::output::out`], so a closed pipe ends them quietly.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::output::{self, Output, table};
use crate::client::profiles::{self, Credentials, Profile, ProfileFile};
use crate::client::{ApiClient, ApiFailure, NotSignedIn, decode, format, usage};
use crate::{
    AuditCommand, ClientCommon, Command, InstancesCommand, LoginArgs, OnOff, ProfilesCommand, RegisterArgs,
    SessionsCommand, SettingsArgs,
};
use crate::{outln, outp};

/// Runs one subcommand: server commands start the servers, client commands call the API and print
/// its answer. One line per command; each command's steps live in its own function.
pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Up(args) => crate::servers::up(args).await,
        Command::Serve(args) => crate::servers::serve(args).await,
        Command::Node(args) => crate::servers::node(args).await,
        Command::Login(args) => login(args).await,
        Command::Logout { common } => logout(&common),
        Command::Whoami { common } => whoami(&common).await,
        Command::Profiles(ProfilesCommand::List { output }) => list_profiles(output),
        Command::Completion { shell } => completion(shell),
        Command::Man { out_dir } => man(out_dir.as_deref()),
        Command::Instances(cmd) => instances(cmd).await,
        Command::Sessions(cmd) => sessions(cmd).await,
        Command::Audit(cmd) => audit(cmd).await,
        Command::Rules(cmd) => crate::client::rules::run(cmd, client_for).await,
        Command::Connections { common, instance, node } => {
            crate::client::rules::connections(client_for(&common)?, common.output, &instance, node).await
        }
    }
}

/// `completion SHELL`: the shell's completion script on stdout.
fn completion(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = <crate::Cli as clap::CommandFactory>::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "docplane", &mut buf);
    output::out(&String::from_utf8_lossy(&buf))?;
    Ok(())
}

/// `instances list | register | unregister | settings`.
async fn instances(command: InstancesCommand) -> Result<()> {
    match command {
        InstancesCommand::List { common, id, name, mode, offset, limit } => {
            let client = client_for(&common)?;
            let mut query = Vec::new();
            push(&mut query, "id", id);
            push(&mut query, "name", name);
            push(&mut query, "mode", mode);
            push(&mut query, "offset", offset);
            push(&mut query, "limit", limit);
            let path = format!("/v3/{}/instances", client.project_id());
            let body = client.call(Method::GET, &path, &query, None).await?;
            print_instances(&body, common.output, offset.unwrap_or(0))
        }
        InstancesCommand::Register(args) => register_instance(args).await,
        InstancesCommand::Unregister { common, instance } => {
            let client = client_for(&common)?;
            let path = format!("/v3/{}/instances/{instance}", client.project_id());
            let answer = client.call(Method::DELETE, &path, &[], None).await?;
            match common.output {
                Output::Json => output::json(&answer),
                Output::Table => {
                    outln!("unregistered instance {instance} (the deployment itself is untouched)");
                    Ok(())
                }
            }
        }
        InstancesCommand::Settings(args) => instance_settings(args).await,
    }
}

/// `instances register`: asks for the MongoDB password when a user is given without one, posts
/// the registration and prints the nodes docplane discovered.
async fn register_instance(args: RegisterArgs) -> Result<()> {
    let RegisterArgs { common, name, seeds, mode, mongos, username, password, password_stdin, auth_source } =
        args;
    let client = client_for(&common)?;
    let password = match &username {
        Some(user) => Some(read_secret(
            password,
            password_stdin,
            &format!("MongoDB password for {user}: "),
            "give the password with DOCPLANE_REGISTER_PASSWORD, --password or --password-stdin",
        )?),
        None => None,
    };
    let mut body = json!({"name": name, "seeds": seeds});
    if let Some(m) = mode {
        body["mode"] = json!(m);
    }
    if !mongos.is_empty() {
        body["mongos"] = json!(mongos);
    }
    if let (Some(u), Some(p)) = (username, password) {
        body["username"] = json!(u);
        body["password"] = json!(p);
    }
    if let Some(a) = auth_source {
        body["auth_source"] = json!(a);
    }
    let path = format!("/v3/{}/instances/register", client.project_id());
    let answer = client.call(Method::POST, &path, &[], Some(&body)).await?;
    if common.output == Output::Json {
        return output::json(&answer);
    }
    let inst = &answer["instance"];
    outln!(
        "registered instance {} ({}, {}) with {} node(s):",
        inst["id"].as_str().unwrap_or("?"),
        inst["name"].as_str().unwrap_or("?"),
        inst["mode"].as_str().unwrap_or("?"),
        node_rows(inst).len()
    );
    outp!("{}", table(&NODE_COLUMNS, &node_rows(inst), 48));
    Ok(())
}

/// `instances settings`: reads the instance's session settings and, when a change flag is given,
/// puts back the whole object with the change applied; prints what the endpoint holds afterwards.
async fn instance_settings(args: SettingsArgs) -> Result<()> {
    let SettingsArgs {
        common,
        instance,
        redact_operations,
        protect_user,
        unprotect_user,
        protect_app,
        unprotect_app,
        clear_protected,
    } = args;
    let client = client_for(&common)?;
    let path = format!("/v3/{}/instances/{instance}/session-settings", client.project_id());
    let current = client.call(Method::GET, &path, &[], None).await?;
    let change = SettingsChange {
        redact_operations: redact_operations.map(|v| v == OnOff::On),
        protect_users: protect_user,
        unprotect_users: unprotect_user,
        protect_apps: protect_app,
        unprotect_apps: unprotect_app,
        clear_protected,
    };
    let shown = if change.is_empty() {
        current
    } else {
        let body = change.apply(&current)?;
        client.call(Method::PUT, &path, &[], Some(&body)).await?
    };
    print_settings(&shown, common.output)
}

/// `sessions list | kill`: a kill with `--where` goes to the selector route, one with session
/// ids to the vendor's kill route.
async fn sessions(command: SessionsCommand) -> Result<()> {
    match command {
        SessionsCommand::List {
            common,
            node,
            op_type,
            namespace,
            plan_summary,
            min_cost_time,
            limit,
            offset,
        } => {
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
            print_sessions(&body, common.output, offset.unwrap_or(0))
        }
        SessionsCommand::Kill { common, node, selector, dry_run, max, .. } if !selector.is_empty() => {
            let filter = parse_where(&selector).map_err(|e| usage(format!("{e:#}")))?;
            let client = client_for(&common)?;
            let path = format!("/v3/{}/nodes/{}/sessions/kill", client.project_id(), node);
            let body = json!({"filter": filter, "max": max, "dry_run": dry_run});
            let answer = client.call(Method::POST, &path, &[], Some(&body)).await?;
            print_selection(&answer, common.output)
        }
        SessionsCommand::Kill { common, node, sessions, .. } => {
            let client = client_for(&common)?;
            let path = format!("/v3/{}/nodes/{}/session", client.project_id(), node);
            let body = client.call(Method::POST, &path, &[], Some(&json!({ "sessions": sessions }))).await?;
            match common.output {
                Output::Json => output::json(&body)?,
                Output::Table => {
                    outln!("killed {} session(s) on node {node}: {}", sessions.len(), sessions.join(" "))
                }
            }
            Ok(())
        }
    }
}

/// `audit list | verify`.
async fn audit(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::List { common, from, to, node, principal, outcome, limit, offset } => {
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
            print_kill_records(&body, common.output, offset.unwrap_or(0))
        }
        AuditCommand::Verify { common } => verify_audit(&common).await,
    }
}

/// `audit verify`: the server recomputes the kill-record hash chain; prints each problem and the
/// summary, and fails (exit code 1) when the chain does not verify.
async fn verify_audit(common: &ClientCommon) -> Result<()> {
    let client = client_for(common)?;
    let path = format!("/v3/{}/kill-records/verify", client.project_id());
    let body = client.call(Method::GET, &path, &[], None).await?;
    if common.output == Output::Json {
        output::json(&body)?;
    } else {
        for p in body["problems"].as_array().into_iter().flatten() {
            outln!("seq {}: {}", p["seq"], p["problem"].as_str().unwrap_or(""));
        }
        outln!(
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

/// The man pages: `docplane.1` on stdout, or every command's page into `dir`.
fn man(dir: Option<&Path>) -> Result<()> {
    let cmd = <crate::Cli as clap::CommandFactory>::command();
    let Some(dir) = dir else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        output::out(&String::from_utf8_lossy(&buf))?;
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // One page per command, named by its display name: docplane-sessions-kill.1, ...
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    let written = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("docplane"))
        .count();
    outln!("wrote {written} man pages into {}", dir.display());
    Ok(())
}

/// `--where KEY=VALUE` criteria as the selector route's `filter` (pure).
fn parse_where(criteria: &[String]) -> Result<Value> {
    let mut filter = serde_json::Map::new();
    for c in criteria {
        let (key, value) =
            c.split_once('=').ok_or_else(|| anyhow::anyhow!("--where {c:?}: expected KEY=VALUE"))?;
        let (field, value) = match key.trim() {
            "type" => ("type", json!(value)),
            "ns" | "namespace" => ("namespace", json!(value)),
            "plan" | "plan_summary" => ("plan_summary", json!(value)),
            "running" => ("cost_time", json!(parse_duration_us(value).context("--where running")?)),
            "client" => ("client", json!(value)),
            "user" => ("user", json!(value)),
            "app" | "app_name" => ("app_name", json!(value)),
            other => {
                anyhow::bail!("--where {other:?}: unknown key (type, ns, plan, running, client, user, app)")
            }
        };
        if filter.insert(field.to_owned(), value).is_some() {
            anyhow::bail!("--where {key}: given twice");
        }
    }
    Ok(Value::Object(filter))
}

/// `30s`, `500ms`, `2m`, `1h`, `250us` as microseconds.
pub fn parse_duration_us(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 =
        digits.parse().map_err(|_| anyhow::anyhow!("{text:?}: expected whole units, e.g. 30s, 500ms, 2m"))?;
    let per = match unit {
        "us" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        _ => anyhow::bail!("{text:?}: the unit must be us, ms, s, m or h"),
    };
    n.checked_mul(per).ok_or_else(|| anyhow::anyhow!("{text:?}: too large"))
}

fn print_selection(body: &Value, output: Output) -> Result<()> {
    if output == Output::Json {
        return output::json(body);
    }
    let rows: Vec<Value> =
        body["sessions"].as_array().cloned().unwrap_or_default().into_iter().map(readable_cost).collect();
    let columns = [
        ("ID", "id"),
        ("OUTCOME", "outcome"),
        ("TYPE", "type"),
        ("RUNNING", "running"),
        ("NAMESPACE", "namespace"),
        ("CLIENT", "client"),
        ("USER", "user"),
        ("APP", "app_name"),
        ("REASON", "reason"),
    ];
    outp!("{}", table(&columns, &rows, 60));
    let verb = if body["dry_run"] == true { "would kill" } else { "killed" };
    let n = if body["dry_run"] == true {
        rows.iter().filter(|r| r["outcome"] == "would_kill").count()
    } else {
        body["killed"].as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0)
    };
    outln!("{verb} {n} of {} matched session(s); {} protected", rows.len(), body["protected"]);
    Ok(())
}

/// Adds `running` (readable) from `cost_time` (microseconds, a string or a number).
fn readable_cost(mut row: Value) -> Value {
    let us = match &row["cost_time"] {
        Value::String(s) => s.parse::<u64>().ok(),
        v => v.as_u64(),
    };
    row["running"] = us.map(|us| Value::String(format::micros(us))).unwrap_or(Value::Null);
    row
}

fn print_kill_records(body: &Value, output: Output, offset: u32) -> Result<()> {
    if output == Output::Json {
        return output::json(body);
    }
    let rows: Vec<Value> = body["records"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut r| {
            r["time"] = r["at"].as_i64().map(|ms| Value::String(format::unix_ms(ms))).unwrap_or(Value::Null);
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
        ("NODE ID", "node_id"),
        ("SESSIONS", "ids"),
        ("OUTCOME", "outcome"),
        ("REQUEST ID", "request_id"),
    ];
    outp!("{}", table(&cols, &rows, 40));
    outln!("{}", format::page(rows.len(), body["total_count"].as_u64(), offset.into(), "record"));
    Ok(())
}

/// What `instances settings` was asked to change.
#[derive(Debug, Default)]
struct SettingsChange {
    redact_operations: Option<bool>,
    protect_users: Vec<String>,
    unprotect_users: Vec<String>,
    protect_apps: Vec<String>,
    unprotect_apps: Vec<String>,
    clear_protected: bool,
}

impl SettingsChange {
    fn is_empty(&self) -> bool {
        self.redact_operations.is_none()
            && self.protect_users.is_empty()
            && self.unprotect_users.is_empty()
            && self.protect_apps.is_empty()
            && self.unprotect_apps.is_empty()
            && !self.clear_protected
    }

    /// The whole settings object to put: `current` (as `GET` answered it) with the change applied.
    /// Removing a name that is not protected, or protecting and removing the same name, is an
    /// error; protecting a name twice is not (the server collapses repeats).
    fn apply(&self, current: &Value) -> Result<Value> {
        let list = |field: &str| -> Result<Vec<String>> {
            current[field]
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect())
                .with_context(|| format!("the endpoint answered settings without a {field} list"))
        };
        let redact = match self.redact_operations {
            Some(v) => v,
            None => current["redact_operations"]
                .as_bool()
                .context("the endpoint answered settings without redact_operations")?,
        };
        let (mut users, mut apps) = if self.clear_protected {
            (Vec::new(), Vec::new())
        } else {
            (list("protected_users")?, list("protected_app_names")?)
        };
        edit(&mut users, &self.protect_users, &self.unprotect_users, "user")?;
        edit(&mut apps, &self.protect_apps, &self.unprotect_apps, "application")?;
        Ok(json!({"redact_operations": redact, "protected_users": users, "protected_app_names": apps}))
    }
}

fn edit(list: &mut Vec<String>, add: &[String], remove: &[String], what: &str) -> Result<()> {
    if let Some(both) = add.iter().find(|a| remove.contains(a)) {
        bail!("{both:?} is both protected and unprotected in one command");
    }
    for name in remove {
        let before = list.len();
        list.retain(|n| n != name);
        anyhow::ensure!(list.len() < before, "{name:?} is not a protected {what} of this instance");
    }
    for name in add {
        if !list.contains(name) {
            list.push(name.clone());
        }
    }
    Ok(())
}

fn print_settings(body: &Value, output: Output) -> Result<()> {
    if output == Output::Json {
        return output::json(body);
    }
    let names = |field: &str| {
        let list: Vec<&str> =
            body[field].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if list.is_empty() { "-".to_owned() } else { list.join(", ") }
    };
    let updated = match (
        body["updated_at"].as_i64().and_then(chrono::DateTime::from_timestamp_millis),
        body["updated_by"].as_str(),
    ) {
        (Some(at), Some(by)) => format!("{} by {by}", at.format("%Y-%m-%d %H:%M:%SZ")),
        _ => "never (the defaults apply)".to_owned(),
    };
    let redact = if body["redact_operations"] == true { "on" } else { "off" };
    let rows = [
        json!({"setting": "instance", "value": body["instance_id"]}),
        json!({"setting": "redact operations", "value": redact}),
        json!({"setting": "protected users", "value": names("protected_users")}),
        json!({"setting": "protected apps", "value": names("protected_app_names")}),
        json!({"setting": "updated", "value": updated}),
    ];
    // Never cut: a protected name hidden behind "..." would mislead.
    outp!("{}", table(&[("SETTING", "setting"), ("VALUE", "value")], &rows, usize::MAX));
    Ok(())
}

fn push(query: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<impl ToString>) {
    if let Some(v) = value {
        query.push((key, v.to_string()));
    }
}

fn load_profile(name: &str) -> Result<Profile> {
    let path = profiles::profiles_path()?;
    let file = ProfileFile::load(&path)?;
    let profile = file.get(name)?.clone();
    if let Credentials::Token { expires_at, .. } = &profile.credentials
        && let Ok(at) = chrono::DateTime::parse_from_rfc3339(expires_at)
        && at < chrono::Utc::now()
    {
        return Err(NotSignedIn(format!(
            "the token of profile '{name}' expired at {expires_at}: run `docplane login --profile {name}` again"
        ))
        .into());
    }
    Ok(profile)
}

fn client_for(common: &ClientCommon) -> Result<ApiClient> {
    ApiClient::new(load_profile(&common.profile)?, common.timeout)
}

/// A secret from its flag or variable, else standard input (`--password-stdin`), else a prompt on
/// the terminal (nothing echoed); with neither a value nor a terminal, a usage error saying how.
fn read_secret(given: Option<String>, from_stdin: bool, prompt: &str, how: &str) -> Result<String> {
    if let Some(v) = given {
        return Ok(v);
    }
    if from_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading standard input")?;
        let s = s.trim_end_matches(['\r', '\n']).to_string();
        if s.is_empty() {
            return Err(usage("standard input was empty"));
        }
        return Ok(s);
    }
    if std::io::stdin().is_terminal() {
        let s = rpassword::prompt_password(prompt).context("reading the password from the terminal")?;
        if s.is_empty() {
            return Err(usage("no password given"));
        }
        return Ok(s);
    }
    Err(usage(format!("{how} (standard input is not a terminal, so there is no prompt)")))
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
    let timeout = args.common.timeout;
    let (profile, who) = if let Some(boot) = &args.bootstrap {
        let text = std::fs::read_to_string(boot).with_context(|| format!("reading {}", boot.display()))?;
        let b: BootstrapFile =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", boot.display()))?;
        let scope = json!({ "id": b.project_id });
        let (token, expires_at, project_id) =
            password_token(&b.endpoint, &b.domain_name, &b.user_name, &b.password, scope, timeout).await?;
        let who = format!("{} ({})", b.user_name, b.domain_name);
        (
            Profile {
                endpoint: b.endpoint,
                project_id,
                credentials: Credentials::Token { token, expires_at },
            },
            who,
        )
    } else {
        let endpoint =
            args.endpoint.clone().ok_or_else(|| usage("--endpoint (or DOCPLANE_ENDPOINT) is required"))?;
        if let Some(ak) = args.ak.clone() {
            let project_id =
                args.project_id.clone().ok_or_else(|| usage("an AK/SK profile needs --project-id"))?;
            let sk = read_secret(
                args.sk.clone(),
                args.password_stdin,
                &format!("Secret key for {ak}: "),
                "give the secret key with DOCPLANE_SK, --sk or --password-stdin",
            )?;
            let profile =
                Profile { endpoint, project_id, credentials: Credentials::Aksk { ak: ak.clone(), sk } };
            // A signed request proves the pair before it is saved: a wrong SK is refused here.
            let who = match whoami_call(&ApiClient::new(profile.clone(), timeout)?).await {
                Ok(me) => format!("{} (access key {ak})", me["user_name"].as_str().unwrap_or("?")),
                Err(e) if forbidden(&e) => format!("access key {ak} (not allowed to read whoami)"),
                Err(e) => return Err(e.context("the endpoint did not accept the access key; nothing saved")),
            };
            (profile, who)
        } else {
            let domain =
                args.domain.clone().ok_or_else(|| usage("--domain (or DOCPLANE_DOMAIN) is required"))?;
            let user = args.user.clone().ok_or_else(|| usage("--user (or DOCPLANE_USER) is required"))?;
            let scope = match (&args.project_id, &args.project_name) {
                (Some(id), _) => json!({ "id": id }),
                (None, Some(name)) => json!({ "name": name, "domain": { "name": domain } }),
                (None, None) => return Err(usage("give --project-id or --project-name")),
            };
            let password = read_secret(
                args.password.clone(),
                args.password_stdin,
                &format!("Password for {user}@{domain}: "),
                "give the password with DOCPLANE_PASSWORD, --password or --password-stdin",
            )?;
            let (token, expires_at, project_id) =
                password_token(&endpoint, &domain, &user, &password, scope, timeout).await?;
            (
                Profile { endpoint, project_id, credentials: Credentials::Token { token, expires_at } },
                format!("{user} ({domain})"),
            )
        }
    };
    let kind = match profile.credentials {
        Credentials::Token { .. } => "token",
        Credentials::Aksk { .. } => "AK/SK",
    };
    let summary = json!({ "profile": args.common.profile, "endpoint": profile.endpoint,
                          "project_id": profile.project_id, "auth": kind, "principal": who });
    file.profiles.insert(args.common.profile.clone(), profile);
    file.save(&path)?;
    match args.common.output {
        Output::Json => output::json(&summary)?,
        Output::Table => outln!(
            "signed in as {who} to project {} at {}; saved {kind} profile '{}' in {}",
            summary["project_id"].as_str().unwrap_or("?"),
            summary["endpoint"].as_str().unwrap_or("?"),
            args.common.profile,
            path.display()
        ),
    }
    Ok(())
}

fn forbidden(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiFailure>().is_some_and(|a| a.status == StatusCode::FORBIDDEN)
}

async fn whoami_call(client: &ApiClient) -> Result<Value> {
    let path = format!("/v3/{}/whoami", client.project_id());
    client.call(Method::GET, &path, &[], None).await
}

fn logout(common: &ClientCommon) -> Result<()> {
    let path = profiles::profiles_path()?;
    let mut file = ProfileFile::load(&path)?;
    file.get(&common.profile)?;
    file.profiles.remove(&common.profile);
    file.save(&path)?;
    match common.output {
        Output::Json => output::json(&json!({"profile": common.profile, "removed": true})),
        Output::Table => {
            outln!("removed profile '{}' from {}", common.profile, path.display());
            Ok(())
        }
    }
}

/// What a profile is, without its secrets: (auth kind, token expiry).
fn profile_kind(p: &Profile) -> (&'static str, Option<&str>) {
    match &p.credentials {
        Credentials::Token { expires_at, .. } => ("token", Some(expires_at.as_str())),
        Credentials::Aksk { .. } => ("aksk", None),
    }
}

async fn whoami(common: &ClientCommon) -> Result<()> {
    let profile = load_profile(&common.profile)?;
    let client = ApiClient::new(profile.clone(), common.timeout)?;
    let me = match whoami_call(&client).await {
        Ok(me) => me,
        Err(e) if forbidden(&e) => {
            json!({"note": "signed in, but not allowed to read whoami (dds:instance:listSession)"})
        }
        Err(e) => return Err(e),
    };
    let (auth, expires) = profile_kind(&profile);
    let ak = match &profile.credentials {
        Credentials::Aksk { ak, .. } => Some(ak.clone()),
        Credentials::Token { .. } => None,
    };
    let view = json!({"profile": common.profile, "endpoint": profile.endpoint, "project_id": profile.project_id,
        "auth": auth, "access_key": ak, "token_expires_at": expires, "user_name": me["user_name"], "user_id": me["user_id"],
        "domain_id": me["domain_id"], "is_admin": me["is_admin"], "note": me["note"]});
    if common.output == Output::Json {
        return output::json(&view);
    }
    let rows: Vec<Value> = [
        "profile",
        "endpoint",
        "project_id",
        "user_name",
        "user_id",
        "domain_id",
        "is_admin",
        "auth",
        "access_key",
        "token_expires_at",
        "note",
    ]
    .iter()
    .filter(|k| !view[**k].is_null())
    .map(|k| json!({"key": k, "value": view[*k]}))
    .collect();
    outp!("{}", table(&[("FIELD", "key"), ("VALUE", "value")], &rows, usize::MAX));
    Ok(())
}

fn list_profiles(output: Output) -> Result<()> {
    let path = profiles::profiles_path()?;
    let file = ProfileFile::load(&path)?;
    let now = chrono::Utc::now();
    let rows: Vec<Value> = file
        .profiles
        .iter()
        .map(|(name, p)| {
            let (auth, expires) = profile_kind(p);
            let state = match expires.map(chrono::DateTime::parse_from_rfc3339) {
                Some(Ok(at)) if at < now => "expired",
                _ => "ok",
            };
            json!({"name": name, "endpoint": p.endpoint, "project_id": p.project_id, "auth": auth,
                   "token_expires_at": expires, "state": state})
        })
        .collect();
    if output == Output::Json {
        return output::json(&json!({"file": path, "profiles": rows}));
    }
    let cols = [
        ("NAME", "name"),
        ("ENDPOINT", "endpoint"),
        ("PROJECT ID", "project_id"),
        ("AUTH", "auth"),
        ("TOKEN EXPIRES", "token_expires_at"),
        ("STATE", "state"),
    ];
    outp!("{}", table(&cols, &rows, usize::MAX));
    outln!("{} profile(s) in {}", rows.len(), path.display());
    Ok(())
}

/// `POST /v3/auth/tokens` with a password identity; returns (token, expires_at, project id).
pub async fn password_token(
    endpoint: &str,
    domain: &str,
    user: &str,
    password: &str,
    project_scope: Value,
    timeout: Duration,
) -> Result<(String, String, String)> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "password": password, "domain": {"name": domain}}}},
        "scope": {"project": project_scope}}});
    let url = format!("{}/v3/auth/tokens", endpoint.trim_end_matches('/'));
    let http = crate::client::http_client(timeout)?;
    let resp = crate::client::send(http.post(&url).json(&body), endpoint, timeout).await?;
    let token = resp.headers().get("X-Subject-Token").and_then(|v| v.to_str().ok()).map(str::to_string);
    let json = decode(resp).await?;
    let token = token.context("the endpoint answered without an X-Subject-Token header")?;
    let expires_at = json["token"]["expires_at"].as_str().unwrap_or_default().to_string();
    let project_id = json["token"]["project"]["id"].as_str().context("token has no project")?.to_string();
    Ok((token, expires_at, project_id))
}

const NODE_COLUMNS: [(&str, &str); 8] = [
    ("INSTANCE ID", "instance_id"),
    ("INSTANCE", "instance"),
    ("MODE", "mode"),
    ("VERSION", "version"),
    ("NODE ID", "node_id"),
    ("ROLE", "role"),
    ("STATUS", "status"),
    ("ADDRESS", "address"),
];

/// One row per node of an instance: the vendor shape has the port on the instance, docplane also
/// on each node (nodes of a registered deployment may listen on different ports).
fn node_rows(inst: &Value) -> Vec<Value> {
    let port = match &inst["port"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let mut rows = Vec::new();
    for group in inst["groups"].as_array().into_iter().flatten() {
        for node in group["nodes"].as_array().into_iter().flatten() {
            rows.push(json!({
                "instance_id": inst["id"], "instance": inst["name"], "mode": inst["mode"],
                "version": inst["datastore"]["version"], "group": group["type"], "node_id": node["id"],
                "node": node["name"], "role": node["role"], "status": node["status"],
                "address": format::host_port(
                    node["private_ip"].as_str().unwrap_or_default(),
                    // The node's own port (docplane's extension), else the instance's.
                    node["port"].as_str().filter(|p| !p.is_empty()).unwrap_or(&port),
                ),
            }));
        }
    }
    rows
}

fn print_instances(body: &Value, output: Output, offset: u32) -> Result<()> {
    if output == Output::Json {
        return output::json(body);
    }
    let instances = body["instances"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Value> = instances.iter().flat_map(node_rows).collect();
    outp!("{}", table(&NODE_COLUMNS, &rows, 48));
    outln!("{}", format::page(instances.len(), body["total_count"].as_u64(), offset.into(), "instance"));
    Ok(())
}

fn print_sessions(body: &Value, output: Output, offset: u32) -> Result<()> {
    if output == Output::Json {
        return output::json(body);
    }
    let rows: Vec<Value> =
        body["sessions"].as_array().cloned().unwrap_or_default().into_iter().map(readable_cost).collect();
    let cols = [
        ("ID", "id"),
        ("ACTIVE", "active"),
        ("TYPE", "type"),
        ("RUNNING", "running"),
        ("NAMESPACE", "namespace"),
        ("PLAN", "plan_summary"),
        ("CLIENT", "client"),
        ("USER", "user"),
        ("DESC", "description"),
        ("OPERATION", "operation"),
    ];
    outp!("{}", table(&cols, &rows, 60));
    outln!("{}", format::page(rows.len(), body["total_count"].as_u64(), offset.into(), "session"));
    Ok(())
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn node_rows_use_each_nodes_port() {
        let inst = json!({"id": "i1", "name": "rs", "mode": "ReplicaSet", "port": "27017",
            "datastore": {"version": "7.0"},
            "groups": [{"type": "replica", "nodes": [
                {"id": "n1", "name": "a", "role": "Primary", "status": "normal", "private_ip": "10.0.0.5", "port": "27017"},
                {"id": "n2", "name": "b", "role": "Secondary", "status": "normal", "private_ip": "10.0.0.5", "port": "27018"},
                {"id": "n3", "name": "c", "role": "Secondary", "status": "normal", "private_ip": "::1"}]}]});
        let addresses: Vec<Value> = node_rows(&inst).iter().map(|r| r["address"].clone()).collect();
        // A node without its own port (a vendor server's answer) takes the instance's.
        assert_eq!(addresses, vec![json!("10.0.0.5:27017"), json!("10.0.0.5:27018"), json!("[::1]:27017")]);
    }

    #[test]
    fn where_criteria() {
        let w = |v: &[&str]| parse_where(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        let f = w(&[
            "type=query",
            "ns=shop.orders",
            "plan=COLLSCAN",
            "running=30s",
            "client=10.0.0.5",
            "user=a",
            "app=r",
        ])
        .unwrap();
        assert_eq!(
            f,
            json!({"type": "query", "namespace": "shop.orders", "plan_summary": "COLLSCAN", "cost_time": 30_000_000_u64,
                   "client": "10.0.0.5", "user": "a", "app_name": "r"})
        );
        assert_eq!(w(&["running=500ms"]).unwrap()["cost_time"], 500_000);
        assert_eq!(w(&["running=2m"]).unwrap()["cost_time"], 120_000_000_u64);
        for bad in [
            &["type"][..],
            &["colour=red"],
            &["user=a", "user=b"],
            &["running=30"],
            &["running=1.5s"],
            &["running=3d"],
        ] {
            assert!(w(bad).is_err(), "{bad:?}");
        }
    }

    fn current() -> Value {
        json!({"instance_id": "i", "redact_operations": true, "protected_users": ["backup", "app@admin"],
               "protected_app_names": ["nightly"], "updated_at": 1, "updated_by": "admin"})
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn settings_change_puts_the_whole_object() {
        let none = SettingsChange::default();
        assert!(none.is_empty());
        // Only the editable fields go back, the rest unchanged.
        let off = SettingsChange { redact_operations: Some(false), ..Default::default() };
        assert!(!off.is_empty());
        assert_eq!(
            off.apply(&current()).unwrap(),
            json!({"redact_operations": false, "protected_users": ["backup", "app@admin"], "protected_app_names": ["nightly"]})
        );
        let edit = SettingsChange {
            protect_users: names(&["reporter", "backup"]),
            unprotect_users: names(&["app@admin"]),
            protect_apps: names(&["etl"]),
            ..Default::default()
        };
        assert_eq!(
            edit.apply(&current()).unwrap(),
            json!({"redact_operations": true, "protected_users": ["backup", "reporter"], "protected_app_names": ["nightly", "etl"]})
        );
        let clear =
            SettingsChange { clear_protected: true, protect_apps: names(&["etl"]), ..Default::default() };
        assert_eq!(
            clear.apply(&current()).unwrap(),
            json!({"redact_operations": true, "protected_users": [], "protected_app_names": ["etl"]})
        );
    }

    #[test]
    fn settings_change_refuses_what_it_cannot_do() {
        let missing = SettingsChange { unprotect_apps: names(&["nope"]), ..Default::default() };
        let e = missing.apply(&current()).unwrap_err().to_string();
        assert!(e.contains("\"nope\" is not a protected application"), "{e}");
        let both = SettingsChange {
            protect_users: names(&["x"]),
            unprotect_users: names(&["x"]),
            ..Default::default()
        };
        assert!(both.apply(&current()).unwrap_err().to_string().contains("both protected and unprotected"));
        let odd = SettingsChange { protect_users: names(&["x"]), ..Default::default() };
        assert!(
            odd.apply(&json!({"redact_operations": true})).is_err(),
            "a malformed answer is not taken as empty"
        );
    }
}
