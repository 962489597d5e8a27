//! Fail points (`configureFailPoint`, a test command): mongod's `failCommand` as drivers' test
//! suites use it. Semantics follow mongod's `fail_point.cpp` (modes and their counters) and
//! `commands.cpp` (`shouldActivateFailCommandFailPoint`, `evaluateFailCommandFailPoint`):
//!
//! - modes `"off"`, `"alwaysOn"`, `{times: n}` (active for the next n matching commands; as in
//!   mongod `{times: 0}` still fires once), `{skip: n}` (the first n matching commands pass, then
//!   always on), `{activationProbability: p}`; the reply's `count` is the number of times the fail
//!   point has fired so far (it is never reset, like mongod's `timesEntered`);
//! - a command matches when its name (or an alias, per the command table) is in
//!   `failCommands` (or `failAllCommands` is set), the connection's `appName`, `threadName`
//!   (`conn<id>`) and the command's `namespace` agree when given, and the command is not
//!   `configureFailPoint` itself. The node has no internal clients, so `failInternalCommands` and
//!   `failLocalClients` change nothing;
//! - before the command runs (inside its registered operation, so `currentOp` lists it and
//!   `killOp` or `maxTimeMS` interrupt the block, as mongod's `opCtx->sleepFor`), when the data has
//!   `closeConnection`, `blockConnection` or `errorCode`: block `blockTimeMS`, then close the
//!   connection without a reply, or fail with `errorCode` ("Failing command via 'failCommand'
//!   failpoint") carrying `errorLabels` (an empty list means none) and `errorExtraInfo`;
//! - after a command that takes a write concern ran, when the data has `writeConcernError`: that
//!   document is added to the reply (with `errorLabels`) instead of waiting for the write concern.
//!
//! Data fields mongod reads that docplane does not implement (e.g. `tassert`) are refused when the
//! fail point is configured, rather than ignored.
//!
//! `maxTimeAlwaysTimeOut` (mongod's `operation_context.cpp`): while on, every operation with a
//! `maxTimeMS` deadline has it expired, so it fails with 50 MaxTimeMSExpired at its first
//! interrupt check (the dispatcher checks once before the handler, as mongod's
//! `execCommandDatabase` does, so even `ping` fails). Only the modes `"alwaysOn"` and `"off"`
//! are implemented (mongod would count `{times: n}` per interrupt check, which the node does not
//! reproduce) and it takes no data: other modes and any data are refused.
//!
//! Other fail point names fail with 266 FailPointSetFailed "<name> not found", as mongod answers
//! names it does not have.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use bson::{Bson, Document, doc};
use docplane_query::CommandError;
use parking_lot::Mutex;

use crate::cmd::util::{as_i64, type_name};
use crate::cmd::{CmdResult, Ctx, table};
use crate::writeconcern::{self, WriteConcern};

/// The fail point drivers' test suites use most.
pub const FAIL_COMMAND: &str = "failCommand";
/// The fail point that expires every deadline.
pub const MAX_TIME_ALWAYS_TIME_OUT: &str = "maxTimeAlwaysTimeOut";

/// `maxTimeAlwaysTimeOut`'s state, shared by the op registry with every op that has a deadline
/// (an atomic load per interrupt check, like the deadline's own flag).
#[derive(Debug, Default)]
pub struct AlwaysTimeOut {
    on: AtomicBool,
    /// How many interrupt checks it failed (mongod's `timesEntered`), never reset.
    times_entered: AtomicI64,
}

impl AlwaysTimeOut {
    /// Whether it is on.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// Counts one interrupt check it failed.
    pub fn entered(&self) {
        self.times_entered.fetch_add(1, Ordering::Relaxed);
    }
}

/// Data fields of `failCommand` the node implements.
const DATA_FIELDS: &[&str] = &[
    "failCommands",
    "failAllCommands",
    "errorCode",
    "errorLabels",
    "errorExtraInfo",
    "closeConnection",
    "blockConnection",
    "blockTimeMS",
    "appName",
    "threadName",
    "namespace",
    "writeConcernError",
    "failInternalCommands",
    "failLocalClients",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Off,
    AlwaysOn,
    /// Remaining activations (mongod's `nTimes` counter).
    Times(i64),
    /// Matching passes still to let through.
    Skip(i64),
    /// Activation probability in [0, 1].
    Random(f64),
}

#[derive(Debug)]
struct State {
    mode: Mode,
    data: Document,
    times_entered: i64,
}

/// The node's fail points (only `failCommand`).
#[derive(Debug)]
pub struct FailPoints {
    fail_command: Mutex<State>,
}

impl Default for FailPoints {
    fn default() -> Self {
        FailPoints {
            fail_command: Mutex::new(State { mode: Mode::Off, data: Document::new(), times_entered: 0 }),
        }
    }
}

impl FailPoints {
    /// mongod's `shouldFailOpenBlock(cb)`: when active and `pred(data)` holds, consumes one
    /// activation per the mode and returns the data.
    fn fire(&self, pred: impl FnOnce(&Document) -> bool) -> Option<Document> {
        let mut s = self.fail_command.lock();
        if s.mode == Mode::Off || !pred(&s.data) {
            return None;
        }
        let on = match &mut s.mode {
            Mode::Off => false,
            Mode::AlwaysOn => true,
            Mode::Random(p) => rand::random::<f64>() < *p,
            Mode::Times(n) => {
                *n -= 1;
                if *n <= 0 {
                    s.mode = Mode::Off;
                }
                true
            }
            Mode::Skip(n) => {
                if *n <= 0 {
                    true
                } else {
                    *n -= 1;
                    false
                }
            }
        };
        if !on {
            return None;
        }
        s.times_entered += 1;
        Some(s.data.clone())
    }
}

fn extract_int(d: &Document, key: &str) -> Result<i64, CommandError> {
    let v =
        d.get(key).ok_or_else(|| CommandError::no_such_key(format!("Missing expected field \"{key}\"")))?;
    if !matches!(v, Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)) {
        return Err(CommandError::type_mismatch(format!(
            "Expected field \"{key}\" to have numeric type, but found {}",
            type_name(v)
        )));
    }
    as_i64(v).ok_or_else(|| {
        CommandError::bad_value(format!(
            "Expected field \"{key}\" to have a value exactly representable as a 64-bit integer, but found {key}: {v}"
        ))
    })
}

fn parse_count(mode: &Document, key: &str) -> Result<i64, CommandError> {
    let n = extract_int(mode, key)?;
    if n < 0 {
        return Err(CommandError::bad_value(format!("'{key}' option to 'mode' must be positive")));
    }
    if n > i64::from(i32::MAX) {
        return Err(CommandError::bad_value(format!("'{key}' option to 'mode' is too large")));
    }
    Ok(n)
}

/// `failCommand`'s `FailPoint::parseBSON`, plus the refusal of data fields the node does not
/// implement.
fn parse(cmd: &Document) -> Result<(Mode, Document), CommandError> {
    let (mode, data) = parse_mode(cmd)?;
    if let Some(k) = data.keys().find(|k| !DATA_FIELDS.contains(&k.as_str())) {
        return Err(CommandError::bad_value(format!(
            "failCommand data field '{k}' is not supported by docplane's node"
        )));
    }
    Ok((mode, data))
}

/// mongod's `FailPoint::parseBSON`: the mode and the data, whatever the fail point.
fn parse_mode(cmd: &Document) -> Result<(Mode, Document), CommandError> {
    let mode = match cmd.get("mode") {
        None => {
            return Err(CommandError::new(
                20,
                "IllegalOperation",
                "When setting a failpoint, you must supply a 'mode'",
            ));
        }
        Some(Bson::String(s)) => match s.as_str() {
            "off" => Mode::Off,
            "alwaysOn" => Mode::AlwaysOn,
            other => return Err(CommandError::bad_value(format!("unknown mode: {other}"))),
        },
        Some(Bson::Document(m)) => {
            if m.contains_key("times") {
                Mode::Times(parse_count(m, "times")?)
            } else if m.contains_key("skip") {
                Mode::Skip(parse_count(m, "skip")?)
            } else if let Some(p) = m.get("activationProbability") {
                let p = match p {
                    Bson::Int32(i) => f64::from(*i),
                    Bson::Int64(i) => *i as f64,
                    Bson::Double(f) => *f,
                    _ => {
                        return Err(CommandError::type_mismatch(
                            "the 'activationProbability' option to 'mode' must be a double between 0 and 1",
                        ));
                    }
                };
                if !(0.0..=1.0).contains(&p) {
                    return Err(CommandError::bad_value(format!(
                        "activationProbability must be between 0.0 and 1.0; found {p}"
                    )));
                }
                Mode::Random(p)
            } else {
                return Err(CommandError::bad_value(
                    "'mode' must be one of 'off', 'alwaysOn', '{times:n}', '{skip:n}' or '{activationProbability:p}'",
                ));
            }
        }
        Some(_) => return Err(CommandError::type_mismatch("'mode' must be a string or JSON object")),
    };
    let data = match cmd.get("data") {
        None => Document::new(),
        Some(Bson::Document(d)) => d.clone(),
        Some(_) => return Err(CommandError::type_mismatch("the 'data' option must be a JSON object")),
    };
    Ok((mode, data))
}

/// `{configureFailPoint: <name>, mode, data}` -> `{count}`.
pub fn configure(ctx: &Ctx<'_>, cmd: &Document) -> CmdResult {
    let name = match cmd.get("configureFailPoint") {
        Some(Bson::String(s)) => s.as_str(),
        _ => "",
    };
    if name == MAX_TIME_ALWAYS_TIME_OUT {
        return configure_always_time_out(&ctx.state.ops.always_time_out, cmd);
    }
    if name != FAIL_COMMAND {
        return Err(CommandError::new(266, "FailPointSetFailed", format!("{name} not found")));
    }
    let (mode, data) = parse(cmd)?;
    let mut s = ctx.state.failpoints.fail_command.lock();
    s.mode = mode;
    s.data = data;
    let count = s.times_entered;
    tracing::warn!(fail_point = name, conn = ctx.conn.info.id, "set failpoint");
    // mongod's appendIntOrLL: an int while it fits.
    let count = i32::try_from(count).map_or(Bson::Int64(count), Bson::Int32);
    Ok(doc! {"count": count})
}

/// `{configureFailPoint: "maxTimeAlwaysTimeOut", mode: "alwaysOn" | "off"}` -> `{count}`.
fn configure_always_time_out(fp: &AlwaysTimeOut, cmd: &Document) -> CmdResult {
    let (mode, data) = parse_mode(cmd)?;
    if !data.is_empty() {
        return Err(CommandError::bad_value(format!(
            "{MAX_TIME_ALWAYS_TIME_OUT} takes no data on docplane's node"
        )));
    }
    let on = match mode {
        Mode::AlwaysOn => true,
        Mode::Off => false,
        _ => {
            return Err(CommandError::bad_value(format!(
                "docplane's node implements only the modes 'alwaysOn' and 'off' of {MAX_TIME_ALWAYS_TIME_OUT}"
            )));
        }
    };
    fp.on.store(on, Ordering::Release);
    tracing::warn!(fail_point = MAX_TIME_ALWAYS_TIME_OUT, on, "set failpoint");
    let count = fp.times_entered.load(Ordering::Relaxed);
    Ok(doc! {"count": i32::try_from(count).map_or(Bson::Int64(count), Bson::Int32)})
}

/// Whether `listed` names the command `name` or one of its aliases (mongod's `hasAlias`).
fn names_command(listed: &str, name: &str) -> bool {
    match (table::lookup(listed), table::lookup(name)) {
        (Some(a), Some(b)) => a.name == b.name,
        _ => listed == name,
    }
}

fn bool_field(d: &Document, key: &str) -> bool {
    matches!(d.get(key), Some(Bson::Boolean(true)))
}

/// mongod's `shouldActivateFailCommandFailPoint` for this command on this connection.
fn matches(data: &Document, ctx: &Ctx<'_>, name: &str) -> bool {
    if name == "configureFailPoint" {
        return false;
    }
    if let Ok(thread) = data.get_str("threadName")
        && thread != format!("conn{}", ctx.conn.info.id)
    {
        return false;
    }
    if let Some(want) = data.get("appName") {
        let have = ctx.conn.info.app_name().unwrap_or_default();
        if want.as_str() != Some(have.as_str()) {
            return false;
        }
    }
    if let Some(ns) = data.get("namespace")
        && ns.as_str() != Some(ctx.op.ns.as_str())
    {
        return false;
    }
    if data.contains_key("failAllCommands") {
        return true;
    }
    match data.get("failCommands") {
        Some(Bson::Array(a)) => a.iter().any(|c| c.as_str().is_some_and(|c| names_command(c, name))),
        _ => false,
    }
}

/// Extra reply fields a fired fail point adds (labels, extra error info, write concern error).
/// `errorLabels` of the data; an empty list means no labels at all (mongod's override).
fn labels(data: &Document) -> Option<Bson> {
    match data.get("errorLabels") {
        Some(Bson::Array(a)) if !a.is_empty() => Some(Bson::Array(a.clone())),
        _ => None,
    }
}

/// Runs before the handler, inside the command's operation. `Err` fails the command; with
/// `closeConnection` the connection is marked to close without a reply.
pub async fn before_command(ctx: &mut Ctx<'_>, name: &str) -> Result<(), CommandError> {
    let fps = &ctx.state.failpoints;
    let mut close = false;
    let mut block = false;
    let mut error_code = None;
    let fired = {
        let c = &*ctx;
        fps.fire(|data| {
            close = bool_field(data, "closeConnection");
            block = bool_field(data, "blockConnection");
            error_code = data.get("errorCode").and_then(as_i64);
            matches(data, c, name) && (close || block || error_code.is_some())
        })
    };
    let Some(data) = fired else { return Ok(()) };
    // Labels apply to whatever error the command ends with (mongod's errorLabelsOverride).
    if let Some(l) = labels(&data) {
        ctx.conn.reply_extras.insert("errorLabels", l);
    }
    if block {
        let invalid = || {
            CommandError::new(
                72,
                "InvalidOptions",
                "must specify 'blockTimeMS' when 'blockConnection' is true",
            )
        };
        let ms = match data.get("blockTimeMS") {
            Some(_) => extract_int(&data, "blockTimeMS").map_err(|_| invalid())?,
            None => return Err(invalid()),
        };
        let ms = u64::try_from(ms)
            .map_err(|_| CommandError::new(72, "InvalidOptions", "'blockTimeMS' must be non-negative"))?;
        tracing::info!(command = name, block_ms = ms, "blocking command via 'failCommand' failpoint");
        ctx.op.state.interruptible_sleep(Duration::from_millis(ms)).await?;
    }
    if close {
        tracing::info!(command = name, "failing command via 'failCommand' failpoint: closing connection");
        ctx.conn.close_requested = true;
        return Err(CommandError::location(50985, "Failing command due to 'failCommand' failpoint"));
    }
    if let Some(code) = error_code {
        if let Ok(extra) = data.get_document("errorExtraInfo") {
            for (k, v) in extra {
                ctx.conn.reply_extras.insert(k.clone(), v.clone());
            }
        } else if data.contains_key("errorExtraInfo") {
            return Err(CommandError::type_mismatch(
                "BSON field 'errorExtraInfo' is the wrong type, expected type 'object'",
            ));
        }
        let code = i32::try_from(code).unwrap_or(i32::MAX);
        tracing::info!(command = name, code, "failing command via 'failCommand' failpoint");
        return Err(CommandError::with_code(code, "Failing command via 'failCommand' failpoint"));
    }
    Ok(())
}

/// After the handler: the `writeConcernError` fail point (in place of the write concern wait,
/// as mongod), else the write concern wait itself.
pub async fn after_command(
    ctx: &mut Ctx<'_>,
    name: &str,
    cmd: &Document,
    wc: Option<WriteConcern>,
    result: CmdResult,
) -> CmdResult {
    if writeconcern::supports_write_concern(name, cmd) {
        let fired = {
            let c = &*ctx;
            ctx.state.failpoints.fire(|data| matches(data, c, name) && data.contains_key("writeConcernError"))
        };
        if let Some(data) = fired {
            let wce = data.get("writeConcernError").cloned().unwrap_or(Bson::Null);
            return match result {
                Ok(mut d) => {
                    d.insert("writeConcernError", wce);
                    if let Some(l) = labels(&data) {
                        d.insert("errorLabels", l);
                    }
                    Ok(d)
                }
                Err(e) => {
                    ctx.conn.reply_extras.insert("writeConcernError", wce);
                    Err(e)
                }
            };
        }
    }
    // The wait happens whether the command succeeded or not: part of a failed batch may be
    // written (mongod waits in both cases too).
    let waited = writeconcern::wait(ctx.state, wc).await;
    match (result, waited) {
        (Ok(d), Ok(())) => Ok(d),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn set(fp: &FailPoints, cmd: Document) {
        let (mode, data) = parse(&cmd).unwrap();
        let mut s = fp.fail_command.lock();
        s.mode = mode;
        s.data = data;
    }

    fn fires(fp: &FailPoints, n: usize) -> Vec<bool> {
        (0..n).map(|_| fp.fire(|_| true).is_some()).collect()
    }

    #[test]
    fn modes_count_as_mongod() {
        let fp = FailPoints::default();
        set(&fp, doc! {"mode": {"times": 2}});
        assert_eq!(fires(&fp, 4), [true, true, false, false]);
        // mongod's nTimes with 0 still fires once.
        set(&fp, doc! {"mode": {"times": 0}});
        assert_eq!(fires(&fp, 2), [true, false]);
        set(&fp, doc! {"mode": {"skip": 2}});
        assert_eq!(fires(&fp, 4), [false, false, true, true]);
        set(&fp, doc! {"mode": "alwaysOn"});
        assert_eq!(fires(&fp, 2), [true, true]);
        set(&fp, doc! {"mode": "off"});
        assert_eq!(fires(&fp, 1), [false]);
        set(&fp, doc! {"mode": {"activationProbability": 0.0}});
        assert_eq!(fires(&fp, 3), [false, false, false]);
        set(&fp, doc! {"mode": {"activationProbability": 1}});
        assert_eq!(fires(&fp, 1), [true]);
        // 2 + 1 + 2 + 2 + 1 fired in all; never reset.
        assert_eq!(fp.fail_command.lock().times_entered, 8);
    }

    #[test]
    fn a_non_matching_command_consumes_nothing() {
        let fp = FailPoints::default();
        set(&fp, doc! {"mode": {"times": 1}});
        assert!(fp.fire(|_| false).is_none());
        assert!(fp.fire(|_| true).is_some());
    }

    #[test]
    fn parse_errors_are_mongods() {
        let code = |c: Document| parse(&c).unwrap_err().code;
        assert_eq!(code(doc! {}), 20);
        assert_eq!(code(doc! {"mode": "sometimes"}), 2);
        assert_eq!(code(doc! {"mode": {"times": -1}}), 2);
        assert_eq!(code(doc! {"mode": {"times": "x"}}), 14);
        assert_eq!(code(doc! {"mode": {"times": 1.5}}), 2);
        assert_eq!(code(doc! {"mode": {"times": 3_000_000_000i64}}), 2);
        assert_eq!(code(doc! {"mode": {"activationProbability": 2.0}}), 2);
        assert_eq!(code(doc! {"mode": {"other": 1}}), 2);
        assert_eq!(code(doc! {"mode": 1}), 14);
        assert_eq!(code(doc! {"mode": "alwaysOn", "data": 1}), 14);
        assert_eq!(code(doc! {"mode": "alwaysOn", "data": {"tassert": true}}), 2);
    }

    #[test]
    fn error_names_come_from_the_code_table() {
        assert_eq!(CommandError::with_code(91, "m").code_name, "ShutdownInProgress");
        assert_eq!(CommandError::with_code(12345, "m").code_name, "Location12345");
    }
}
