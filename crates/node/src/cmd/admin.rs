//! Handshake and administrative commands: hello/isMaster, buildInfo, getParameter, getCmdLineOpts,
//! connectionStatus, serverStatus, hostInfo, listCommands, getLog, and the `sleep` test command.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bson::{Bson, Document, doc};
use docplane_query::CommandError;

use super::{CmdResult, Ctx, authcmd, util};
use crate::auth::{Mechanism, RoleRef, UserName};
use crate::{DOCPLANE_VERSION, MAX_WIRE_VERSION, MONGODB_COMPAT_VERSION};

/// hello / isMaster / ismaster.
pub async fn hello(ctx: &mut Ctx<'_>, cmd: &Document, name: &str) -> CmdResult {
    if let Some(client) = util::opt_doc(cmd, "client")? {
        let mut meta = ctx.conn.info.metadata.lock();
        if meta.is_none() {
            *meta = Some(client.clone());
        }
    }
    let mut d = Document::new();
    if util::opt_bool(cmd, "helloOk")?.unwrap_or(false) {
        d.insert("helloOk", true);
    }
    if name == "hello" {
        d.insert("isWritablePrimary", true);
    } else {
        d.insert("ismaster", true);
    }
    let st = ctx.state;
    d.insert("maxBsonObjectSize", docplane_wire::MAX_BSON_OBJECT_SIZE as i32);
    d.insert("maxMessageSizeBytes", i32::try_from(st.config.max_message_size).unwrap_or(i32::MAX));
    d.insert("maxWriteBatchSize", 100_000i32);
    d.insert("localTime", bson::DateTime::now());
    d.insert("logicalSessionTimeoutMinutes", 30i32);
    d.insert("connectionId", i32::try_from(ctx.conn.info.id).unwrap_or(i32::MAX));
    d.insert("minWireVersion", 0i32);
    d.insert("maxWireVersion", MAX_WIRE_VERSION);
    d.insert("readOnly", false);
    if let Ok(target) = cmd.get_str("saslSupportedMechs")
        && let Some((db, user)) = target.split_once('.')
        && let Some(u) = st.users.get(&UserName::new(user, db))
    {
        d.insert("saslSupportedMechs", u.mechanisms());
    }
    if let Some(spec) = util::opt_doc(cmd, "speculativeAuthenticate")? {
        let db = spec.get_str("db").unwrap_or("admin").to_owned();
        match authcmd::start_conversation(ctx, spec, &db) {
            Ok(r) => {
                d.insert("speculativeAuthenticate", r);
            }
            Err(e) => {
                tracing::info!(conn = ctx.conn.info.id, error = %e.message, "speculative authentication failed")
            }
        }
    }
    Ok(d)
}

/// buildInfo.
pub fn build_info() -> Document {
    let parts: Vec<i32> = MONGODB_COMPAT_VERSION.split('.').filter_map(|p| p.parse().ok()).collect();
    let mut version_array: Vec<Bson> = parts.iter().map(|p| Bson::Int32(*p)).collect();
    version_array.push(Bson::Int32(0));
    doc! {
        "version": MONGODB_COMPAT_VERSION,
        "gitVersion": "docplane",
        "modules": [],
        "allocator": "system",
        "javascriptEngine": "none",
        "sysInfo": "deprecated",
        "versionArray": version_array,
        "openssl": {"running": "disabled", "compiled": "disabled"},
        "buildEnvironment": {"distarch": std::env::consts::ARCH, "target_arch": std::env::consts::ARCH, "target_os": std::env::consts::OS},
        "bits": 64,
        "debug": false,
        "maxBsonObjectSize": docplane_wire::MAX_BSON_OBJECT_SIZE as i32,
        "storageEngines": ["docplane"],
        "docplane": {"version": DOCPLANE_VERSION},
    }
}

fn parameters(ctx: &Ctx<'_>) -> Document {
    let c = &ctx.state.config;
    doc! {
        "featureCompatibilityVersion": {"version": "7.0"},
        "authenticationMechanisms": ["SCRAM-SHA-1", "SCRAM-SHA-256"],
        "enableTestCommands": c.enable_test_commands,
        "cursorTimeoutMillis": i64::try_from(c.cursor_timeout.as_millis()).unwrap_or(i64::MAX),
        "logLevel": 0,
        "quiet": false,
        "maxBSONDepth": docplane_wire::MAX_BSON_DEPTH as i32,
        "internalQueryMaxBlockingSortMemoryUsageBytes": 104_857_600i64,
    }
}

/// getParameter: `{getParameter: 1, <name>: 1}` or `{getParameter: "*"}`.
pub fn get_parameter(ctx: &Ctx<'_>, cmd: &Document) -> CmdResult {
    let all = parameters(ctx);
    if matches!(cmd.get("getParameter"), Some(Bson::String(s)) if s == "*") {
        return Ok(all);
    }
    if let Some(Bson::Document(opts)) = cmd.get("getParameter")
        && opts.get("allParameters").is_some_and(util::truthy)
    {
        return Ok(all);
    }
    let mut out = Document::new();
    for k in cmd.keys().skip(1) {
        if k.starts_with('$') || k == "lsid" || k == "comment" || k == "maxTimeMS" {
            continue;
        }
        if let Some(v) = all.get(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    if out.is_empty() {
        return Err(CommandError::invalid_options("no option found to get"));
    }
    Ok(out)
}

/// getCmdLineOpts.
pub fn get_cmd_line_opts(ctx: &Ctx<'_>) -> Document {
    let c = &ctx.state.config;
    let argv: Vec<Bson> = censor_argv(std::env::args()).into_iter().map(Bson::String).collect();
    let mut storage = Document::new();
    if let Some(dir) = &c.data_dir {
        storage.insert("dbPath", dir.display().to_string());
    }
    doc! {
        "argv": argv,
        "parsed": {
            "net": {"bindIp": c.bind.ip().to_string(), "port": i32::from(ctx.state.local_addr.port())},
            "storage": storage,
            "security": {"authorization": if c.auth { "enabled" } else { "disabled" }},
            "setParameter": {"enableTestCommands": if c.enable_test_commands { "1" } else { "0" }},
        },
    }
}

/// What a secret on the command line is replaced with (mongod's `censorArgvArray` writes the
/// same).
const CENSORED: &str = "<password>";

/// Whether a long option's value is a secret: mongod censors the options registered as redacted
/// (its TLS and KMIP passwords); docplane's command line carries `--root-password`,
/// `--password`, `--sk` and store URLs, so every option named like a secret is censored.
fn secret_option(name: &str) -> bool {
    let n = name.trim_start_matches('-').to_ascii_lowercase();
    n == "sk" || ["password", "passwd", "pwd", "secret", "token", "key"].iter().any(|w| n.contains(w))
}

/// A URL with its userinfo password replaced (`postgres://u:pw@h` -> `postgres://u:<password>@h`).
fn censor_url(arg: &str) -> String {
    if let Some((scheme, rest)) = arg.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:{CENSORED}@{host}");
    }
    arg.to_owned()
}

/// The process arguments as `getCmdLineOpts` shows them: values of secret options (`--x v` and
/// `--x=v`) and URL passwords replaced by `<password>`, to every caller (root included), as mongod
/// censors its argv.
pub fn censor_argv(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut censor_next = false;
    for arg in args {
        if censor_next {
            censor_next = false;
            out.push(CENSORED.to_owned());
            continue;
        }
        if arg.starts_with("--") {
            if let Some((name, _)) = arg.split_once('=') {
                if secret_option(name) {
                    out.push(format!("{name}={CENSORED}"));
                    continue;
                }
            } else if secret_option(&arg) {
                censor_next = true;
                out.push(arg);
                continue;
            }
        }
        out.push(censor_url(&arg));
    }
    out
}

/// connectionStatus.
pub fn connection_status(ctx: &Ctx<'_>, cmd: &Document) -> CmdResult {
    let auth = ctx.conn.info.auth.lock().clone();
    let users: Vec<Bson> = auth.iter().map(|(u, _)| Bson::Document(u.to_doc())).collect();
    let roles: Vec<Bson> = auth
        .iter()
        .flat_map(|(_, r)| r.iter())
        .map(|r| Bson::Document(doc! {"role": &r.role, "db": &r.db}))
        .collect();
    let mut info = doc! {"authenticatedUsers": users, "authenticatedUserRoles": roles};
    if util::opt_bool(cmd, "showPrivileges")?.unwrap_or(false) {
        let all: Vec<RoleRef> = auth.iter().flat_map(|(_, r)| r.iter().cloned()).collect();
        let privileges: Vec<Bson> = crate::auth::roles::privileges_of(&all)
            .into_iter()
            .map(|(p, actions)| {
                let actions: Vec<&str> = actions.iter().map(|a| a.name()).collect();
                Bson::Document(doc! {"resource": p.to_doc(), "actions": actions})
            })
            .collect();
        info.insert("authenticatedUserPrivileges", privileges);
    }
    Ok(doc! {"authInfo": info})
}

fn memory_mb() -> (i64, i64) {
    // /proc/self/statm: size resident ... in pages
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let mut it = statm.split_whitespace().map(|x| x.parse::<i64>().unwrap_or(0));
    let size = it.next().unwrap_or(0);
    let resident = it.next().unwrap_or(0);
    let page = 4096;
    (resident * page / (1024 * 1024), size * page / (1024 * 1024))
}

/// serverStatus.
pub fn server_status(ctx: &Ctx<'_>) -> Document {
    let st = ctx.state;
    let up = st.started.elapsed();
    let conns = st.conns.lock();
    let current = conns.len() as i32;
    let active = conns.values().filter(|c| c.busy.load(Ordering::Relaxed)).count() as i32;
    drop(conns);
    let available = i32::try_from(st.config.max_connections).unwrap_or(i32::MAX).saturating_sub(current);
    let oc = &st.opcounters;
    let (resident, virt) = memory_mb();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as i64;
    doc! {
        "host": &st.host,
        "version": MONGODB_COMPAT_VERSION,
        "process": "mongod",
        "pid": i64::from(std::process::id()),
        "uptime": up.as_secs_f64().floor(),
        "uptimeMillis": i64::try_from(up.as_millis()).unwrap_or(i64::MAX),
        "uptimeEstimate": up.as_secs() as i64,
        "localTime": bson::DateTime::now(),
        "connections": {
            "current": current,
            "available": available,
            "totalCreated": st.total_created.load(Ordering::Relaxed) as i64,
            "active": active,
        },
        "opcounters": {
            "insert": load(&oc.insert),
            "query": load(&oc.query),
            "update": load(&oc.update),
            "delete": load(&oc.delete),
            "getmore": load(&oc.getmore),
            "command": load(&oc.command),
        },
        "mem": {"bits": 64, "resident": resident, "virtual": virt, "supported": true},
        "metrics": {
            "cursor": {"open": {"total": st.cursors.len() as i64}},
            "operation": {"inFlight": st.ops.len() as i64},
        },
        "logicalSessionRecordCache": {"activeSessionsCount": st.sessions.len() as i64},
        "docplane": {"version": DOCPLANE_VERSION},
    }
}

/// hostInfo.
pub fn host_info(ctx: &Ctx<'_>) -> Document {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let host = ctx.state.host.rsplit_once(':').map(|(h, _)| h.to_owned()).unwrap_or_default();
    doc! {
        "system": {
            "currentTime": bson::DateTime::now(),
            "hostname": host,
            "cpuAddrSize": 64,
            "memSizeMB": mem_kb / 1024,
            "memLimitMB": mem_kb / 1024,
            "numCores": cores,
            "cpuArch": std::env::consts::ARCH,
            "numaEnabled": false,
        },
        "os": {"type": "Linux", "name": std::env::consts::OS, "version": release.trim()},
        "extra": {},
    }
}

/// listCommands: every command of the table available on this node, aliases included.
pub fn list_commands(config: &crate::NodeConfig) -> Document {
    let mut cmds = Document::new();
    let mut names: Vec<(&str, &super::table::Command)> = super::table::COMMANDS
        .iter()
        .filter(|c| c.available_on(config))
        .flat_map(|c| c.names().map(move |n| (n, c)))
        .collect();
    names.sort_by_key(|(n, _)| *n);
    for (n, c) in names {
        cmds.insert(
            n,
            doc! {
                "help": "",
                "requiresAuth": c.requires_auth(),
                "adminOnly": c.admin_only,
                "secondaryOk": true,
                "apiVersions": c.api_versions.to_vec(),
                "deprecatedApiVersions": c.deprecated_api_versions.to_vec(),
            },
        );
    }
    doc! {"commands": cmds}
}

/// getLog: `"*"`, `"global"` or `"startupWarnings"`.
pub fn get_log(ctx: &Ctx<'_>, cmd: &Document) -> CmdResult {
    match cmd.get("getLog") {
        Some(Bson::String(s)) if s == "*" => Ok(doc! {"names": ["global", "startupWarnings"]}),
        Some(Bson::String(s)) if s == "global" => Ok(doc! {"totalLinesWritten": 0, "log": []}),
        Some(Bson::String(s)) if s == "startupWarnings" => {
            let t = ctx.state.started_wall.try_to_rfc3339_string().unwrap_or_default();
            let lines: Vec<Bson> = ctx
                .state
                .startup_warnings
                .iter()
                .enumerate()
                .map(|(i, msg)| {
                    let line = doc! {
                        "t": {"$date": &t}, "s": "W", "c": "CONTROL", "id": 22120 + i as i32,
                        "ctx": "initandlisten", "msg": msg, "tags": ["startupWarnings"],
                    };
                    Bson::String(Bson::Document(line).into_relaxed_extjson().to_string())
                })
                .collect();
            Ok(doc! {"totalLinesWritten": lines.len() as i32, "log": lines})
        }
        Some(Bson::String(s)) => Err(CommandError::bad_value(format!("No log named '{s}'"))),
        _ => Err(CommandError::type_mismatch("Argument to getLog must be of type String")),
    }
}

/// The test command `{sleep: 1, millis: N}` / `{sleep: 1, secs: N}` (default 10 s); interruptible.
pub async fn sleep(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let millis = match (cmd.get("millis"), cmd.get("secs")) {
        (Some(m), _) => {
            util::as_i64(m).ok_or_else(|| CommandError::type_mismatch("millis must be a number"))?
        }
        (None, Some(s)) => util::as_i64(s)
            .ok_or_else(|| CommandError::type_mismatch("secs must be a number"))?
            .saturating_mul(1000),
        (None, None) => 10_000,
    };
    let millis =
        u64::try_from(millis).map_err(|_| CommandError::bad_value("sleep time must be non-negative"))?;
    // Test hook (docplane's own; `sleep` exists only with test commands on): the first
    // `uninterruptibleMillis` ignore kills, like an operation inside a section with no interrupt
    // point, so that a kill's verification deadline can be exercised.
    let deaf = match cmd.get("uninterruptibleMillis") {
        None => 0,
        Some(v) => util::as_i64(v)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| CommandError::bad_value("uninterruptibleMillis must be a non-negative number"))?,
    }
    .min(millis);
    if deaf > 0 {
        tokio::time::sleep(Duration::from_millis(deaf)).await;
    }
    ctx.op.state.interruptible_sleep(Duration::from_millis(millis - deaf)).await?;
    Ok(doc! {})
}

/// Mechanisms we accept.
pub fn mechanisms() -> [Mechanism; 2] {
    [Mechanism::Sha1, Mechanism::Sha256]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        censor_argv(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn secrets_are_censored_from_the_command_line() {
        assert_eq!(
            argv(&[
                "docplane",
                "up",
                "--root-user",
                "admin",
                "--root-password",
                "s3cret-pw",
                "--node-port",
                "1"
            ]),
            ["docplane", "up", "--root-user", "admin", "--root-password", "<password>", "--node-port", "1"]
        );
        assert_eq!(
            argv(&["x", "--password=hunter2", "--sk", "SK"]),
            ["x", "--password=<password>", "--sk", "<password>"]
        );
        assert_eq!(
            argv(&["x", "--store", "postgres://dp:pg-pw@db:5432/dp"]),
            ["x", "--store", "postgres://dp:<password>@db:5432/dp"]
        );
        // a secret option as the last argument, and nothing secret
        assert_eq!(argv(&["x", "--root-password"]), ["x", "--root-password"]);
        assert_eq!(argv(&["x", "--node-bind", "127.0.0.1"]), ["x", "--node-bind", "127.0.0.1"]);
    }
}
