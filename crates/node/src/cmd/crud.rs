//! Data commands: parse the command document into engine requests, run them on a blocking thread with
//! the op's interrupt, and shape replies as mongod does (cursor `{id, ns, firstBatch|nextBatch}`,
//! `n`/`nModified`/`upserted`/`writeErrors`, `lastErrorObject`/`value`, ...).
//!
//! Interruptions (killOp, shutdown, maxTimeMS) fail the whole command with a top-level error, as mongod
//! does for write batches too.

use std::collections::VecDeque;

use bson::{Bson, Document, doc};
use docplane_engine::{DeleteStatement, FindAndModify, FindQuery, UpdateStatement, WriteError, WriteOutcome};
use docplane_query::{CommandError, Filter, LetVars, Pipeline, Projection, SortSpec, Update};

use super::{CmdResult, Ctx, currentop, findopts, minmax, options, out_merge, sessioncmd, util};
use crate::auth::{Action, Resource, has_any_privilege};
use crate::cursors::{BATCH_BYTES, DEFAULT_FIRST_BATCH, NewCursor, Stream, parse_batch_size};

/// The filter at `key`, its `$expr` seeing `lets` (and failing on any other user variable).
fn filter_of(cmd: &Document, key: &str, lets: &LetVars) -> Result<Filter, CommandError> {
    match util::opt_doc(cmd, key)? {
        Some(f) => Filter::parse(f)?.with_let(lets),
        None => Ok(Filter::match_all()),
    }
}

fn sort_of(cmd: &Document, key: &str) -> Result<Option<SortSpec>, CommandError> {
    util::opt_doc(cmd, key)?.filter(|d| !d.is_empty()).map(SortSpec::parse).transpose()
}

fn projection_of(cmd: &Document, key: &str) -> Result<Option<Projection>, CommandError> {
    util::opt_doc(cmd, key)?.filter(|d| !d.is_empty()).map(Projection::parse).transpose()
}

/// A command's (or statement's) `hint`: an index name or key pattern, the empty ones meaning
/// none as in mongod; any other type fails as mongod's IDL fails it (14 TypeMismatch), never
/// ignored. A hint naming no index fails later, at planning (2 BadValue).
fn hint_of(cmd: &Document) -> Result<Option<Bson>, CommandError> {
    match cmd.get("hint") {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok((!s.is_empty()).then(|| Bson::String(s.clone()))),
        Some(Bson::Document(d)) => Ok((!d.is_empty()).then(|| Bson::Document(d.clone()))),
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field 'hint' is the wrong type '{}', expected types '[string, object]'",
            util::type_name(other)
        ))),
    }
}

fn cursor_reply(ns: &str, batch: Vec<Document>, id: i64, first: bool) -> Document {
    let key = if first { "firstBatch" } else { "nextBatch" };
    doc! {"cursor": {key: batch, "id": id, "ns": ns}}
}

/// Opens a cursor over `docs` and returns the first-batch reply.
fn open_cursor(
    ctx: &Ctx<'_>,
    ns: String,
    docs: Vec<Document>,
    batch_size: Option<usize>,
    single_batch: bool,
    cmd: &Document,
) -> CmdResult {
    let size = batch_size.unwrap_or(DEFAULT_FIRST_BATCH);
    let mut docs: VecDeque<Document> = docs.into();
    if single_batch {
        let batch = crate::cursors::take_batch(&mut docs, size)?;
        return Ok(cursor_reply(&ns, batch, 0, true));
    }
    let (batch, id) = ctx.state.cursors.first_batch(docs, size, new_cursor(ctx, ns.clone(), cmd))?;
    if id != 0 {
        ctx.op.cursor_id.store(id, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(cursor_reply(&ns, batch, id, true))
}

/// `allowDiskUse: true` asks mongod to spill a blocking sort or `$group` past its 100 MB limit
/// to disk. The node cannot spill, so when such a stage exceeds the limit with the option set,
/// the error says so instead of pretending the option was honoured.
fn disk_use_refused(cmd: &Document) -> Result<impl Fn(CommandError) -> CommandError, CommandError> {
    let allow = util::opt_bool(cmd, "allowDiskUse")?.unwrap_or(false);
    Ok(move |e: CommandError| {
        if allow && e.code == 292 {
            CommandError::new(
                292,
                "QueryExceededMemoryLimitNoDiskUseAllowed",
                format!(
                    "{} (allowDiskUse: true cannot lift the limit: this server does not spill to disk)",
                    e.message
                ),
            )
        } else {
            e
        }
    })
}

fn cursor_batch_size(cmd: &Document) -> Result<Option<usize>, CommandError> {
    match cmd.get("cursor") {
        Some(Bson::Document(c)) => parse_batch_size(c.get("batchSize")),
        None => Ok(None),
        Some(_) => Err(CommandError::type_mismatch("cursor field must be missing or an object")),
    }
}

pub(super) async fn find(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "find", &ctx.db)?.to_owned();
    let lets = options::find(cmd)?;
    let collation = options::collation(cmd)?;
    let filter = filter_of(cmd, "filter", &lets)?;
    let sort = sort_of(cmd, "sort")?;
    let projection = projection_of(cmd, "projection")?.map(|p| p.checked_let(&lets)).transpose()?;
    let skip = util::opt_u64(cmd, "skip")?.unwrap_or(0);
    let mut single_batch = util::opt_bool(cmd, "singleBatch")?.unwrap_or(false);
    let limit = match cmd.get("limit") {
        None | Some(Bson::Null) => 0,
        Some(b) => {
            let n = util::as_i64(b).ok_or_else(|| CommandError::type_mismatch("limit must be a number"))?;
            if n < 0 {
                single_batch = true;
            }
            n.unsigned_abs()
        }
    };
    let batch_size = parse_batch_size(cmd.get("batchSize"))?;
    let tailable = util::opt_bool(cmd, "tailable")?.unwrap_or(false);
    let await_data = util::opt_bool(cmd, "awaitData")?.unwrap_or(false);
    if await_data && !tailable {
        return Err(CommandError::failed_to_parse("Cannot set 'awaitData' without also setting 'tailable'"));
    }
    let hint = hint_of(cmd)?;
    if tailable {
        check_tailable(cmd, single_batch, hint.as_ref())?;
        let q = FindQuery { filter, projection, sort: None, skip, limit, hint: None };
        return find_tailable(ctx, (coll, collation), q, batch_size, await_data, cmd).await;
    }
    let spill = disk_use_refused(cmd)?;
    let bounds = minmax::parse(cmd, &ctx.state.engine, &ctx.db, &coll)?;
    let q = FindQuery { filter, projection, sort, skip, limit, hint };
    if let Some(opts) = findopts::parse(cmd)? {
        let docs = findopts::find(ctx, coll, q, bounds, opts).await.map_err(spill)?;
        let ns = ctx.op.ns.clone();
        return open_cursor(ctx, ns, docs, batch_size, single_batch, cmd);
    }
    let (db, op) = (ctx.db.clone(), ctx.op.clone());
    let ns_of = (db.clone(), Some(coll.clone()));
    if let Some(b) = bounds {
        // min/max: the hinted index's bounded range, read whole (not streamed).
        let out = ctx
            .blocking_in(ns_of, collation, move |e, intr| {
                op.set_plan_summary(e.plan_summary(&db, &coll, &q.filter, q.sort.as_ref(), q.hint.as_ref()));
                minmax::find(e, &db, &coll, &q, &b, intr)
            })
            .await
            .map_err(spill)?;
        ctx.op.set_plan_summary(out.plan_summary.clone());
        let ns = ctx.op.ns.clone();
        return open_cursor(ctx, ns, out.docs, batch_size, single_batch, cmd);
    }
    let first = batch_size.unwrap_or(DEFAULT_FIRST_BATCH);
    // The first batch only: the rest is read by getMore from where this stops (a blocking sort
    // excepted, which sorts everything now).
    let (stream, batch) = ctx
        .blocking_in(ns_of, collation, move |e, intr| {
            op.set_plan_summary(e.plan_summary(&db, &coll, &q.filter, q.sort.as_ref(), q.hint.as_ref()));
            let mut s = e.find_stream(&db, &coll, q, intr)?;
            // batchSize 0: nothing read yet, the cursor open (mongod does the same).
            let batch = if first == 0 { Vec::new() } else { e.find_next(&mut s, first, BATCH_BYTES, intr)? };
            Ok((s, batch))
        })
        .await
        .map_err(spill)?;
    ctx.op.set_plan_summary(stream.plan_summary().to_owned());
    let ns = ctx.op.ns.clone();
    if single_batch || (stream.is_done() && first != 0) {
        return Ok(cursor_reply(&ns, batch, 0, true));
    }
    let returned = batch.len();
    let id = ctx.state.cursors.open_stream(Stream::Find(stream), returned, new_cursor(ctx, ns.clone(), cmd));
    ctx.op.cursor_id.store(id, std::sync::atomic::Ordering::Relaxed);
    Ok(cursor_reply(&ns, batch, id, true))
}

/// mongod's checks of a tailable find (`query_request_helper::validateFindCommandRequest`): no
/// sort but `{$natural: 1}`, no `singleBatch`; a tailable cursor always scans the collection
/// in insertion order, so a hint naming an index is refused rather than ignored.
fn check_tailable(cmd: &Document, single_batch: bool, hint: Option<&Bson>) -> Result<(), CommandError> {
    let natural_forward = |d: &Document| d.len() == 1 && d.get("$natural").and_then(util::as_i64) == Some(1);
    if let Some(s) = util::opt_doc(cmd, "sort")?
        && !s.is_empty()
        && !natural_forward(s)
    {
        return Err(CommandError::bad_value(
            "cannot use tailable option with a sort other than {$natural: 1}",
        ));
    }
    if single_batch {
        return Err(CommandError::bad_value("cannot use tailable option with the 'singleBatch' option"));
    }
    match hint {
        None => Ok(()),
        Some(Bson::Document(h)) if natural_forward(h) => Ok(()),
        Some(_) => Err(CommandError::bad_value(
            "a tailable cursor always scans the collection in insertion order: it cannot use a hint",
        )),
    }
}

/// A tailable find on a capped collection: the first batch, and a cursor that stays open at
/// the end of the data (mongod opens none on a missing or empty collection).
async fn find_tailable(
    ctx: &mut Ctx<'_>,
    (coll, collation): (String, docplane_query::collation::Requested),
    q: FindQuery,
    batch_size: Option<usize>,
    await_data: bool,
    cmd: &Document,
) -> CmdResult {
    let first = batch_size.unwrap_or(DEFAULT_FIRST_BATCH);
    let db = ctx.db.clone();
    let ns_of = (db.clone(), Some(coll.clone()));
    let (stream, batch, empty) = ctx
        .blocking_in(ns_of, collation, move |e, intr| {
            let mut s = e.find_tail(&db, &coll, q)?;
            let empty = e.stream_collection_empty(&s);
            let batch =
                if first == 0 || empty { Vec::new() } else { e.find_next(&mut s, first, BATCH_BYTES, intr)? };
            Ok((s, batch, empty))
        })
        .await?;
    ctx.op.set_plan_summary(stream.plan_summary().to_owned());
    let ns = ctx.op.ns.clone();
    if empty || stream.is_done() {
        return Ok(cursor_reply(&ns, batch, 0, true));
    }
    let new = NewCursor { tailable: true, await_data, ..new_cursor(ctx, ns.clone(), cmd) };
    let id = ctx.state.cursors.open_stream(Stream::Find(stream), batch.len(), new);
    ctx.op.cursor_id.store(id, std::sync::atomic::Ordering::Relaxed);
    Ok(cursor_reply(&ns, batch, id, true))
}

fn new_cursor(ctx: &Ctx<'_>, ns: String, cmd: &Document) -> NewCursor {
    NewCursor {
        ns,
        users: ctx.users(),
        session: ctx.op.session.clone(),
        lsid: ctx.op.lsid.clone(),
        conn_id: ctx.conn.info.id,
        originating_command: (*ctx.op.command).clone(),
        plan_summary: ctx.op.plan_summary.lock().clone(),
        no_timeout: cmd.get("noCursorTimeout").is_some_and(util::truthy),
        tailable: false,
        await_data: false,
    }
}

pub(super) async fn get_more(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let id = match cmd.get("getMore") {
        Some(Bson::Int64(i)) => *i,
        Some(Bson::Int32(i)) => i64::from(*i),
        _ => return Err(CommandError::type_mismatch("Field 'getMore' must be of type long in: getMore")),
    };
    let coll = util::req_str(cmd, "collection")?;
    let ns = format!("{}.{coll}", ctx.db);
    let batch_size = parse_batch_size(cmd.get("batchSize"))?.unwrap_or(0);
    ctx.op.cursor_id.store(id, std::sync::atomic::Ordering::Relaxed);
    if let Some(e) = ctx.op.state.error() {
        ctx.state.cursors.kill(&[id]);
        return Err(e);
    }
    let (users, check_owner) = (ctx.users(), ctx.state.auth_enabled());
    let checked_out = ctx.state.cursors.checkout_stream(id, &ns, &users, check_owner, &ctx.op.state)?;
    let Some((mut cursor, _pin)) = checked_out else {
        let (batch, next) = ctx.state.cursors.get_more(id, &ns, batch_size, &users, check_owner)?;
        return Ok(cursor_reply(&ns, batch, next, false));
    };
    // A streaming cursor: this getMore reads the next batch, as a killable op with the cursor's
    // plan. On any error the cursor is gone (it is checked out), as mongod destroys it.
    if let Some(p) = cursor.plan_summary.clone() {
        ctx.op.set_plan_summary(p);
    }
    let Some(mut stream) = cursor.stream.take() else {
        return Err(CommandError::new(1, "InternalError", "streaming cursor without a stream"));
    };
    // An awaitData cursor's getMore waits up to its maxTimeMS (default 1 s) for new data when
    // there is none; the dispatcher did not make that a deadline.
    let await_until = cursor.await_data.then(|| {
        let ms = cmd.get("maxTimeMS").and_then(util::as_i64).filter(|n| *n > 0).unwrap_or(1000);
        std::time::Instant::now() + std::time::Duration::from_millis(ms.unsigned_abs())
    });
    let mut inserts = ctx.state.capped_inserts.subscribe();
    let batch = loop {
        inserts.mark_unchanged();
        let (s, batch) = ctx
            .blocking(move |e, intr| {
                let batch = match &mut stream {
                    Stream::Find(f) => e.find_next(f, batch_size, BATCH_BYTES, intr)?,
                    Stream::Aggregate(a) => e.aggregate_next(a, batch_size, BATCH_BYTES, intr)?,
                };
                Ok((stream, batch))
            })
            .await?;
        stream = s;
        let Some(until) = await_until else { break batch };
        if !batch.is_empty() || stream.is_done() || std::time::Instant::now() >= until {
            break batch;
        }
        // Woken by an insert into a capped collection, a kill (killOp, killCursors) or the end
        // of the wait.
        tokio::select! {
            changed = inserts.changed() => {
                if changed.is_err() {
                    break batch;
                }
            }
            e = ctx.op.state.killed_wait() => return Err(e),
            _ = tokio::time::sleep_until(until.into()) => break batch,
        }
    };
    if stream.is_done() {
        return Ok(cursor_reply(&ns, batch, 0, false));
    }
    cursor.stream = Some(stream);
    if !ctx.state.cursors.checkin(cursor, batch.len()) {
        // killCursors came while the batch was computed: the cursor is gone, as mongod's.
        return Err(ctx.op.state.error().unwrap_or_else(CommandError::interrupted));
    }
    Ok(cursor_reply(&ns, batch, id, false))
}

pub(super) fn kill_cursors(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "killCursors", &ctx.db)?;
    let ns = format!("{}.{coll}", ctx.db);
    let ids: Vec<i64> = match cmd.get("cursors") {
        Some(Bson::Array(a)) => a
            .iter()
            .map(|b| match b {
                Bson::Int64(i) => Ok(*i),
                Bson::Int32(i) => Ok(i64::from(*i)),
                _ => Err(CommandError::type_mismatch("cursor ids must be longs")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(CommandError::type_mismatch("killCursors requires an array 'cursors'")),
    };
    let me = ctx.users();
    let mut mine = Vec::new();
    let mut not_found = Vec::new();
    for id in ids {
        match ctx.state.cursors.owner(id) {
            Some((cns, owners)) if cns == ns => {
                // mongod's checkAuthForKillCursors: killAnyCursor on the cluster or the
                // database, or the cursor's own users.
                if ctx.state.auth_enabled()
                    && owners != me
                    && !ctx.has_cluster(Action::KillAnyCursor)
                    && !ctx.has(&Resource::Db(ctx.db.clone()), Action::KillAnyCursor)
                {
                    return Err(CommandError::unauthorized(format!("not authorized to kill cursor {id}")));
                }
                mine.push(id);
            }
            _ => not_found.push(id),
        }
    }
    let (killed, mut missing) = ctx.state.cursors.kill(&mine);
    missing.extend(not_found);
    Ok(doc! {"cursorsKilled": killed, "cursorsNotFound": missing, "cursorsAlive": [], "cursorsUnknown": []})
}

fn ordered(cmd: &Document) -> Result<bool, CommandError> {
    Ok(util::opt_bool(cmd, "ordered")?.unwrap_or(true))
}

fn write_reply(out: WriteOutcome, extra: impl FnOnce(&mut Document, &WriteOutcome)) -> CmdResult {
    if let Some(e) = out.interrupted.clone() {
        return Err(e);
    }
    let mut d = doc! {"n": i64::try_from(out.n).unwrap_or(i64::MAX) as i32};
    extra(&mut d, &out);
    if !out.write_errors.is_empty() {
        let errs: Vec<Bson> = out.write_errors.iter().map(|e| Bson::Document(e.to_document())).collect();
        d.insert("writeErrors", errs);
    }
    Ok(d)
}

pub(super) async fn insert(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "insert", &ctx.db)?.to_owned();
    options::insert(cmd)?;
    let docs: Vec<Document> =
        util::doc_array(cmd.get("documents"), "documents")?.into_iter().cloned().collect();
    if docs.len() > 100_000 {
        return Err(CommandError::invalid_options("Write batch sizes must be between 1 and 100000"));
    }
    let ordered = ordered(cmd)?;
    let bypass = options::bypass(cmd)?;
    let db = ctx.db.clone();
    let out = ctx
        .blocking(move |e, intr| {
            Ok(docplane_engine::bypassing_validation(bypass, || e.insert(&db, &coll, docs, ordered, intr)))
        })
        .await?;
    ctx.state.opcounters.bump("insert", out.n.saturating_sub(1));
    write_reply(out, |_, _| {})
}

/// Runs statements that parsed, then merges per-statement parse errors as write errors (in index order;
/// an ordered batch stops at its first error).
fn merge_parse_errors(
    mut out: WriteOutcome,
    idx: &[usize],
    parse_errors: Vec<(usize, CommandError)>,
    ordered: bool,
) -> WriteOutcome {
    for e in &mut out.write_errors {
        e.index = idx.get(e.index).copied().unwrap_or(e.index);
    }
    for u in &mut out.upserted {
        u.0 = idx.get(u.0).copied().unwrap_or(u.0);
    }
    let engine_failed = !out.write_errors.is_empty();
    for (i, e) in parse_errors {
        if ordered && engine_failed {
            break;
        }
        out.write_errors.push(WriteError {
            index: i,
            code: e.code,
            code_name: e.code_name,
            errmsg: e.message,
            info: e.info,
        });
        if ordered {
            break;
        }
    }
    out.write_errors.sort_by_key(|e| e.index);
    out
}

fn parse_update_stmt(d: &Document, lets: &LetVars) -> Result<UpdateStatement, CommandError> {
    let lets = options::statement_vars(lets, d)?;
    let filter = filter_of(d, "q", &lets)?;
    let array_filters: Option<Vec<Document>> = match d.get("arrayFilters") {
        None | Some(Bson::Null) => None,
        v => Some(util::doc_array(v, "arrayFilters")?.into_iter().cloned().collect()),
    };
    let update = match d.get("u") {
        Some(Bson::Document(u)) => Update::parse(u, array_filters.as_deref())?,
        Some(Bson::Array(_)) => {
            let stages: Vec<Document> = util::doc_array(d.get("u"), "u")?.into_iter().cloned().collect();
            Update::parse_pipeline(&stages)?
        }
        _ => {
            return Err(CommandError::failed_to_parse(
                "BSON field 'update.updates.u' is missing or not an object",
            ));
        }
    };
    let update = update.checked_let(&lets)?;
    let multi = util::opt_bool(d, "multi")?.unwrap_or(false);
    if multi && update.is_replacement() {
        return Err(CommandError::failed_to_parse(
            "multi update is not supported for replacement-style update",
        ));
    }
    Ok(UpdateStatement {
        filter,
        update,
        upsert: util::opt_bool(d, "upsert")?.unwrap_or(false),
        multi,
        hint: hint_of(d)?,
        collation: options::collation(d)?,
    })
}

pub(super) async fn update(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "update", &ctx.db)?.to_owned();
    let lets = options::update(cmd)?;
    let bypass = options::bypass(cmd)?;
    let stmts = util::doc_array(cmd.get("updates"), "updates")?;
    let ordered = ordered(cmd)?;
    let mut good = Vec::new();
    let mut idx = Vec::new();
    let mut bad = Vec::new();
    for (i, d) in stmts.into_iter().enumerate() {
        match parse_update_stmt(d, &lets) {
            Ok(s) => {
                if !ordered || bad.is_empty() {
                    good.push(s);
                    idx.push(i);
                }
            }
            Err(e) => bad.push((i, e)),
        }
    }
    if ordered && let Some((first_bad, _)) = bad.first() {
        let keep = idx.iter().take_while(|i| *i < first_bad).count();
        good.truncate(keep);
        idx.truncate(keep);
    }
    let (db, op) = (ctx.db.clone(), ctx.op.clone());
    let out = ctx
        .blocking(move |e, intr| {
            if let Some(s) = good.first() {
                let c = s.collation.resolve(e.default_collation(&db, &coll).as_ref());
                op.set_plan_summary(docplane_query::collation::scoped(c, || {
                    e.plan_summary(&db, &coll, &s.filter, None, s.hint.as_ref())
                }));
            }
            Ok(docplane_engine::bypassing_validation(bypass, || e.update(&db, &coll, &good, ordered, intr)))
        })
        .await?;
    let out = merge_parse_errors(out, &idx, bad, ordered);
    write_reply(out, |d, out| {
        d.insert("nModified", i64::try_from(out.n_modified).unwrap_or(i64::MAX) as i32);
        if !out.upserted.is_empty() {
            let ups: Vec<Bson> = out
                .upserted
                .iter()
                .map(|(i, id)| Bson::Document(doc! {"index": *i as i32, "_id": id.clone()}))
                .collect();
            d.insert("upserted", ups);
        }
    })
}

pub(super) async fn delete(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "delete", &ctx.db)?.to_owned();
    let lets = options::delete(cmd)?;
    let stmts = util::doc_array(cmd.get("deletes"), "deletes")?;
    let ordered = ordered(cmd)?;
    let mut good = Vec::new();
    let mut idx = Vec::new();
    let mut bad = Vec::new();
    for (i, d) in stmts.into_iter().enumerate() {
        let parsed = (|| -> Result<DeleteStatement, CommandError> {
            let filter = filter_of(d, "q", &lets)?;
            let limit = d.get("limit").and_then(util::as_i64).ok_or_else(|| {
                CommandError::new(
                    40414,
                    "Location40414",
                    "BSON field 'delete.deletes.limit' is missing but a required field",
                )
            })?;
            if limit != 0 && limit != 1 {
                return Err(CommandError::failed_to_parse(format!(
                    "The limit field in delete objects must be 0 or 1. Got {limit}"
                )));
            }
            Ok(DeleteStatement {
                filter,
                limit_one: limit == 1,
                hint: hint_of(d)?,
                collation: options::collation(d)?,
            })
        })();
        match parsed {
            Ok(s) => {
                if !ordered || bad.is_empty() {
                    good.push(s);
                    idx.push(i);
                }
            }
            Err(e) => bad.push((i, e)),
        }
    }
    let (db, op) = (ctx.db.clone(), ctx.op.clone());
    let out = ctx
        .blocking(move |e, intr| {
            if let Some(s) = good.first() {
                let c = s.collation.resolve(e.default_collation(&db, &coll).as_ref());
                op.set_plan_summary(docplane_query::collation::scoped(c, || {
                    e.plan_summary(&db, &coll, &s.filter, None, s.hint.as_ref())
                }));
            }
            Ok(e.delete(&db, &coll, &good, ordered, intr))
        })
        .await?;
    let out = merge_parse_errors(out, &idx, bad, ordered);
    write_reply(out, |_, _| {})
}

pub(super) async fn find_and_modify(ctx: &mut Ctx<'_>, cmd: &Document, name: &str) -> CmdResult {
    let coll = util::coll_arg(cmd, name, &ctx.db)?.to_owned();
    let lets = options::find_and_modify(cmd, name)?;
    let array_filters: Option<Vec<Document>> = match cmd.get("arrayFilters") {
        None | Some(Bson::Null) => None,
        v => Some(util::doc_array(v, "arrayFilters")?.into_iter().cloned().collect()),
    };
    let update = match cmd.get("update") {
        None | Some(Bson::Null) => None,
        Some(Bson::Document(u)) => Some(Update::parse(u, array_filters.as_deref())?),
        Some(Bson::Array(_)) => {
            let stages: Vec<Document> =
                util::doc_array(cmd.get("update"), "update")?.into_iter().cloned().collect();
            Some(Update::parse_pipeline(&stages)?.checked_let(&lets)?)
        }
        Some(_) => {
            return Err(CommandError::failed_to_parse(
                "Update argument must be either an object or an array",
            ));
        }
    };
    let req = FindAndModify {
        filter: filter_of(cmd, "query", &lets)?,
        sort: sort_of(cmd, "sort")?,
        remove: util::opt_bool(cmd, "remove")?.unwrap_or(false),
        update,
        new: util::opt_bool(cmd, "new")?.unwrap_or(false),
        fields: projection_of(cmd, "fields")?.map(|p| p.checked_let(&lets)).transpose()?,
        upsert: util::opt_bool(cmd, "upsert")?.unwrap_or(false),
        hint: hint_of(cmd)?,
    };
    let (db, op) = (ctx.db.clone(), ctx.op.clone());
    let ns_of = (db.clone(), Some(coll.clone()));
    let bypass = options::bypass(cmd)?;
    let out = ctx
        .blocking_in(ns_of, options::collation(cmd)?, move |e, intr| {
            op.set_plan_summary(e.plan_summary(
                &db,
                &coll,
                &req.filter,
                req.sort.as_ref(),
                req.hint.as_ref(),
            ));
            docplane_engine::bypassing_validation(bypass, || e.find_and_modify(&db, &coll, &req, intr))
                .map(|o| (o, req.remove))
        })
        .await?;
    let (out, remove) = out;
    let mut leo = doc! {"n": out.n as i32};
    if !remove {
        leo.insert("updatedExisting", out.updated_existing);
    }
    if let Some(id) = out.upserted {
        leo.insert("upserted", id);
    }
    Ok(doc! {"lastErrorObject": leo, "value": out.value.map(Bson::Document).unwrap_or(Bson::Null)})
}

pub(super) async fn count(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "count", &ctx.db)?.to_owned();
    options::count(cmd)?;
    let filter = filter_of(cmd, "query", &LetVars::none())?;
    let skip = util::opt_u64(cmd, "skip")?.unwrap_or(0);
    let limit = cmd.get("limit").and_then(util::as_i64).map(i64::unsigned_abs).unwrap_or(0);
    let hint = hint_of(cmd)?;
    let (db, op) = (ctx.db.clone(), ctx.op.clone());
    let ns_of = (db.clone(), Some(coll.clone()));
    let n = ctx
        .blocking_in(ns_of, options::collation(cmd)?, move |e, intr| {
            op.set_plan_summary(e.plan_summary(&db, &coll, &filter, None, hint.as_ref()));
            e.count_hinted(&db, &coll, &filter, skip, limit, hint.as_ref(), intr)
        })
        .await?;
    Ok(doc! {"n": i64::try_from(n).unwrap_or(i64::MAX) as i32})
}

pub(super) async fn distinct(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "distinct", &ctx.db)?.to_owned();
    options::distinct(cmd)?;
    let key = util::req_str(cmd, "key")?.to_owned();
    let filter = filter_of(cmd, "query", &LetVars::none())?;
    let hint = hint_of(cmd)?;
    let (db, op) = (ctx.db.clone(), ctx.op.clone());
    let ns_of = (db.clone(), Some(coll.clone()));
    let values = ctx
        .blocking_in(ns_of, options::collation(cmd)?, move |e, intr| {
            op.set_plan_summary(e.plan_summary(&db, &coll, &filter, None, hint.as_ref()));
            e.distinct_hinted(&db, &coll, &key, &filter, hint.as_ref(), intr)
        })
        .await?;
    Ok(doc! {"values": values})
}

pub(super) async fn aggregate(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = match cmd.get("aggregate") {
        Some(Bson::String(_)) => Some(util::coll_arg(cmd, "aggregate", &ctx.db)?.to_owned()),
        Some(b) if util::as_i64(b) == Some(1) => None,
        _ => {
            return Err(CommandError::failed_to_parse(
                "Invalid {aggregate: ...} value: must be a collection name string or the number 1",
            ));
        }
    };
    let lets = options::aggregate(cmd)?;
    let collation = options::collation(cmd)?;
    let stages: Vec<Document> =
        util::doc_array(cmd.get("pipeline"), "pipeline")?.into_iter().cloned().collect();
    let (stages, sink) = out_merge::split(&stages, &ctx.db)?;
    if sink.is_some()
        && stages.first().is_some_and(|s| {
            ["$currentOp", "$listLocalSessions", "$listSessions"].iter().any(|k| s.contains_key(*k))
        })
    {
        return Err(CommandError::command_not_supported(
            "$out and $merge after $currentOp or a session listing are not supported by docplane's node",
        ));
    }
    let explain = util::opt_bool(cmd, "explain")?.unwrap_or(false);
    if !cmd.contains_key("cursor") && !explain {
        return Err(CommandError::failed_to_parse(
            "The 'cursor' option is required, except for aggregate with the explain argument",
        ));
    }
    let batch_size = cursor_batch_size(cmd)?;
    let db = ctx.db.clone();
    let ns = ctx.op.ns.clone();
    let first_is_current_op = stages.first().and_then(|s| s.get("$currentOp")).cloned();
    if let Some(spec) = first_is_current_op {
        if coll.is_some() {
            return Err(CommandError::new(
                73,
                "InvalidNamespace",
                "$currentOp must be run against the 'admin' database with {aggregate: 1}",
            ));
        }
        let started = std::time::Instant::now();
        let (entries, applied_next) = currentop::current_op_stage_before(ctx, &spec, stages.get(1))?;
        let entries_at = started.elapsed();
        let rest = Pipeline::parse(&stages[1..])?.checked_let(&lets)?;
        let rest = if applied_next { rest.without_first() } else { rest };
        if rest.is_empty() && entries.len() <= currentop::INLINE_ENTRIES {
            // A few entries and nothing left to run (an opid lookup, the kill's candidate read):
            // built here, without the round trip to a blocking thread.
            if let Some(e) = ctx.op.interrupt().0.error() {
                return Err(e);
            }
            return open_cursor(ctx, ns, entries.into_docs(), batch_size, false, cmd);
        }
        let ns_of = (db.clone(), None);
        let n = entries.len();
        let docs = ctx
            .blocking_in(ns_of, collation, move |e, intr| {
                let t = std::time::Instant::now();
                let docs = e.run_pipeline_source(&db, &entries, &rest, intr);
                Ok((docs?, t.elapsed()))
            })
            .await;
        let (docs, ran) = docs?;
        let piped_at = started.elapsed();
        let reply = open_cursor(ctx, ns, docs, batch_size, false, cmd);
        // Where a `$currentOp` aggregate's time goes (dds_bench prints it with
        // `DDS_BENCH_TRACE=docplane_node::current_op=debug`): gathering and filtering the
        // entries (on this task), the rest of the pipeline (on a blocking thread: `run_us` of
        // `pipeline_us`, the rest waiting for one), the first batch.
        tracing::debug!(
            target: "docplane_node::current_op",
            entries = n,
            entries_us = super::micros(entries_at),
            pipeline_us = super::micros(piped_at - entries_at),
            run_us = super::micros(ran),
            reply_us = super::micros(started.elapsed() - piped_at),
        );
        return reply;
    }
    let first_lists_sessions = stages.first().and_then(|s| {
        ["$listLocalSessions", "$listSessions"].into_iter().find_map(|n| s.get(n).map(|v| (n, v.clone())))
    });
    if let Some((stage, spec)) = first_lists_sessions {
        let local = stage == "$listLocalSessions";
        let place_ok =
            if local { coll.is_none() } else { db == "config" && coll.as_deref() == Some("system.sessions") };
        if !place_ok {
            return Err(CommandError::invalid_namespace(if local {
                "$listLocalSessions must be run against the database with {aggregate: 1}, not a collection"
            } else {
                "$listSessions may only be run against config.system.sessions"
            }));
        }
        let input = sessioncmd::list_sessions_stage(ctx, stage, &spec)?;
        let rest = Pipeline::parse(&stages[1..])?.checked_let(&lets)?;
        let ns_of = (db.clone(), None);
        let docs =
            ctx.blocking_in(ns_of, collation, move |e, intr| e.run_pipeline(&db, input, &rest, intr)).await?;
        return open_cursor(ctx, ns, docs, batch_size, false, cmd);
    }
    if stages.iter().skip(1).any(|s| s.contains_key("$currentOp")) {
        return Err(CommandError::location(
            40602,
            "$currentOp is only valid as the first stage in a pipeline",
        ));
    }
    let pipeline = Pipeline::parse(&stages)?.checked_let(&lets)?;
    let spill = disk_use_refused(cmd)?;
    let hint = hint_of(cmd)?;
    if hint.is_some() && coll.is_none() {
        return Err(CommandError::failed_to_parse(
            "hint is not supported for an aggregate that reads no collection ({aggregate: 1})",
        ));
    }
    let op = ctx.op.clone();
    if let Some(c) = coll.clone().filter(|_| sink.is_none() && !explain && pipeline.is_streaming()) {
        return aggregate_streaming(ctx, (c, collation), pipeline, hint, batch_size, cmd)
            .await
            .map_err(spill);
    }
    let ns_of = (db.clone(), coll.clone());
    let sink_collation = collation.clone();
    let out = ctx
        .blocking_in(ns_of.clone(), collation, move |e, intr| match coll {
            Some(c) => {
                // Planned before it runs, so that currentOp shows the plan while it runs.
                let all = docplane_query::Filter::match_all();
                let first = pipeline.leading_match().unwrap_or(&all);
                op.set_plan_summary(e.plan_summary(&db, &c, first, None, hint.as_ref()));
                let out = e.aggregate_hinted(&db, &c, &pipeline, hint.as_ref(), intr)?;
                op.set_plan_summary(out.plan_summary.clone());
                Ok(out.docs)
            }
            None => e.run_pipeline(&db, Vec::new(), &pipeline, intr),
        })
        .await
        .map_err(spill)?;
    if let Some(sink) = sink.filter(|_| !explain) {
        let bypass = options::bypass(cmd)?;
        ctx.blocking_in(ns_of, sink_collation, move |e, intr| {
            docplane_engine::bypassing_validation(bypass, || sink.write(e, out, intr))
        })
        .await?;
        return Ok(cursor_reply(&ns, Vec::new(), 0, true));
    }
    if explain {
        let plan = ctx.op.plan_summary.lock().clone().unwrap_or_else(|| "COLLSCAN".into());
        return Ok(
            doc! {"stages": [{"$cursor": {"queryPlanner": {"namespace": &ns, "winningPlan": winning_plan(&plan)}}}]},
        );
    }
    open_cursor(ctx, ns, out, batch_size, false, cmd)
}

/// An aggregate whose stages all work document by document: the first batch is computed now,
/// reading the collection only as far as it needs; the rest by getMore (a `getmore` op, killable),
/// from a cursor holding the engine's [`docplane_engine::AggStream`].
async fn aggregate_streaming(
    ctx: &mut Ctx<'_>,
    (coll, collation): (String, docplane_query::collation::Requested),
    pipeline: Pipeline,
    hint: Option<Bson>,
    batch_size: Option<usize>,
    cmd: &Document,
) -> CmdResult {
    let first = batch_size.unwrap_or(DEFAULT_FIRST_BATCH);
    let (db, op) = (ctx.db.clone(), ctx.op.clone());
    let ns_of = (db.clone(), Some(coll.clone()));
    let (stream, batch) = ctx
        .blocking_in(ns_of, collation, move |e, intr| {
            let all = docplane_query::Filter::match_all();
            let f = pipeline.leading_match().unwrap_or(&all);
            op.set_plan_summary(e.plan_summary(&db, &coll, f, None, hint.as_ref()));
            let Some(mut s) = e.aggregate_stream(&db, &coll, &pipeline, hint, intr)? else {
                return Err(CommandError::new(1, "InternalError", "streaming pipeline did not stream"));
            };
            // batchSize 0: nothing computed yet, the cursor open.
            let batch =
                if first == 0 { Vec::new() } else { e.aggregate_next(&mut s, first, BATCH_BYTES, intr)? };
            Ok((s, batch))
        })
        .await?;
    ctx.op.set_plan_summary(stream.plan_summary().to_owned());
    let ns = ctx.op.ns.clone();
    if stream.is_done() && first != 0 {
        return Ok(cursor_reply(&ns, batch, 0, true));
    }
    let id = ctx.state.cursors.open_stream(
        Stream::Aggregate(stream),
        batch.len(),
        new_cursor(ctx, ns.clone(), cmd),
    );
    ctx.op.cursor_id.store(id, std::sync::atomic::Ordering::Relaxed);
    Ok(cursor_reply(&ns, batch, id, true))
}

fn strip_generic(cmd: &Document, first: &str) -> Document {
    const GENERIC: &[&str] = &[
        "$db",
        "lsid",
        "$clusterTime",
        "$readPreference",
        "maxTimeMS",
        "comment",
        "writeConcern",
        "readConcern",
        "txnNumber",
        "autocommit",
        "startTransaction",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
    ];
    cmd.iter()
        .filter(|(k, _)| k.as_str() != first && !GENERIC.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(super) async fn create(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "create", &ctx.db)?.to_owned();
    options::create(cmd)?;
    let mut options = strip_generic(cmd, "create");
    if let Some(ci) = options::clustered_index(cmd)? {
        options.insert("clusteredIndex", ci);
    }
    // As mongod stores them: a capped collection's limits normalized, an uncapped one's dropped.
    for k in ["capped", "size", "max"] {
        options.remove(k);
    }
    if let Some(c) = options::capped(cmd)? {
        options.extend(c);
    }
    if options.get_document("validator").is_ok_and(|v| !v.is_empty()) {
        no_validator_in_internal_db(&ctx.db, &coll)?;
    }
    let db = ctx.db.clone();
    ctx.blocking(move |e, _| e.create_collection(&db, &coll, options)).await?;
    Ok(doc! {})
}

/// mongod refuses validators on the `admin`, `local` and `config` databases' collections.
fn no_validator_in_internal_db(db: &str, coll: &str) -> Result<(), CommandError> {
    if matches!(db, "admin" | "local" | "config") {
        return Err(CommandError::invalid_options(format!(
            "Document validators not allowed on system collection {db}.{coll}"
        )));
    }
    Ok(())
}

/// `collMod`: the validation settings (`options::coll_mod` refuses the rest), applied and
/// journaled by the engine; 26 NamespaceNotFound for a missing collection.
pub(super) async fn coll_mod(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "collMod", &ctx.db)?.to_owned();
    let changes = options::coll_mod(cmd)?;
    if changes.get_document("validator").is_ok_and(|v| !v.is_empty()) {
        no_validator_in_internal_db(&ctx.db, &coll)?;
    }
    let db = ctx.db.clone();
    ctx.blocking(move |e, _| e.coll_mod(&db, &coll, &changes)).await?;
    Ok(doc! {})
}

pub(super) async fn drop_coll(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "drop", &ctx.db)?.to_owned();
    let db = ctx.db.clone();
    let ns = format!("{db}.{coll}");
    let n = ctx
        .blocking(move |e, _| {
            let n = e.list_indexes(&db, &coll).map(|v| v.len()).unwrap_or(0);
            e.drop_collection(&db, &coll)?;
            Ok(n)
        })
        .await?;
    Ok(doc! {"nIndexesWas": n as i32, "ns": ns})
}

pub(super) async fn list_collections(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let filter = filter_of(cmd, "filter", &LetVars::none())?;
    let name_only = util::opt_bool(cmd, "nameOnly")?.unwrap_or(false);
    let batch_size = cursor_batch_size(cmd)?;
    let db = ctx.db.clone();
    let infos = ctx.blocking(move |e, _| Ok(e.list_collections(&db))).await?;
    let docs: Vec<Document> = infos
        .into_iter()
        .map(|c| {
            if name_only {
                doc! {"name": c.name, "type": "collection"}
            } else {
                doc! {
                    "name": c.name,
                    "type": "collection",
                    "options": c.options,
                    "info": {"readOnly": false, "uuid": c.uuid},
                    "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
                }
            }
        })
        .filter(|d| filter.matches(d))
        .collect();
    let ns = format!("{}.$cmd.listCollections", ctx.db);
    open_cursor(ctx, ns, docs, batch_size, false, cmd)
}

pub(super) async fn list_databases(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let filter = filter_of(cmd, "filter", &LetVars::none())?;
    let name_only = util::opt_bool(cmd, "nameOnly")?.unwrap_or(false);
    let all = ctx.has_cluster(crate::auth::Action::ListDatabases);
    let roles = ctx.roles();
    let dbs = ctx.blocking(|e, _| Ok(e.list_databases())).await?;
    let mut total: u64 = 0;
    let mut out = Vec::new();
    for d in dbs {
        // mongod 4.0.6+: without listDatabases, the databases the user has any privilege on.
        let visible = all || has_any_privilege(&roles, &Resource::Db(d.name.clone()));
        if !visible {
            continue;
        }
        let doc = if name_only {
            doc! {"name": &d.name}
        } else {
            doc! {"name": &d.name, "sizeOnDisk": d.size_on_disk as i64, "empty": d.empty}
        };
        if filter.matches(&doc) {
            total += d.size_on_disk;
            out.push(Bson::Document(doc));
        }
    }
    if name_only {
        return Ok(doc! {"databases": out});
    }
    Ok(doc! {"databases": out, "totalSize": total as i64, "totalSizeMb": (total / (1024 * 1024)) as i64})
}

pub(super) async fn drop_database(ctx: &mut Ctx<'_>) -> CmdResult {
    let db = ctx.db.clone();
    ctx.blocking(move |e, _| e.drop_database(&db)).await?;
    Ok(doc! {"dropped": &ctx.db})
}

pub(super) async fn rename_collection(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let from = util::req_str(cmd, "renameCollection")?.to_owned();
    let to = util::req_str(cmd, "to")?.to_owned();
    let drop_target = util::opt_bool(cmd, "dropTarget")?.unwrap_or(false);
    let (fd, fc) = util::split_ns(&from)?;
    let (td, tc) = util::split_ns(&to)?;
    util::check_db_name(fd)?;
    util::check_db_name(td)?;
    util::check_coll_name(td, tc)?;
    let (fd, fc, td, tc) = (fd.to_owned(), fc.to_owned(), td.to_owned(), tc.to_owned());
    ctx.blocking(move |e, _| e.rename_collection((&fd, &fc), (&td, &tc), drop_target)).await?;
    Ok(doc! {})
}

pub(super) async fn create_indexes(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "createIndexes", &ctx.db)?.to_owned();
    let specs: Vec<Document> = util::doc_array(cmd.get("indexes"), "indexes")?.into_iter().cloned().collect();
    let db = ctx.db.clone();
    let out = ctx.blocking(move |e, intr| e.create_indexes(&db, &coll, &specs, intr)).await?;
    let mut d = doc! {
        "numIndexesBefore": out.num_indexes_before as i32,
        "numIndexesAfter": out.num_indexes_after as i32,
        "createdCollectionAutomatically": out.created_collection_automatically,
    };
    if let Some(n) = out.note {
        d.insert("note", n);
    }
    Ok(d)
}

pub(super) async fn list_indexes(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "listIndexes", &ctx.db)?.to_owned();
    let batch_size = cursor_batch_size(cmd)?;
    let db = ctx.db.clone();
    let docs = ctx
        .blocking(move |e, _| {
            let mut docs = e.list_indexes(&db, &coll)?;
            // A clustered collection lists its clustered index in place of `_id_`, as mongod.
            let info = e.list_collections(&db).into_iter().find(|c| c.name == coll);
            if let Some(Ok(ci)) = info.as_ref().map(|c| c.options.get_document("clusteredIndex")) {
                let mut listed = ci.clone();
                listed.insert("clustered", true);
                for d in &mut docs {
                    if d.get_str("name") == Ok("_id_") {
                        *d = listed.clone();
                    }
                }
            }
            Ok(docs)
        })
        .await?;
    let ns = ctx.op.ns.clone();
    open_cursor(ctx, ns, docs, batch_size, false, cmd)
}

pub(super) async fn drop_indexes(ctx: &mut Ctx<'_>, cmd: &Document, name: &str) -> CmdResult {
    let coll = util::coll_arg(cmd, name, &ctx.db)?.to_owned();
    let which = cmd.get("index").cloned().ok_or_else(|| {
        CommandError::new(
            40414,
            "Location40414",
            "BSON field 'dropIndexes.index' is missing but a required field",
        )
    })?;
    let db = ctx.db.clone();
    let n = ctx
        .blocking(move |e, _| match &which {
            Bson::Array(names) => {
                let mut was = 0;
                for (i, n) in names.iter().enumerate() {
                    let w = e.drop_indexes(&db, &coll, n)?;
                    if i == 0 {
                        was = w;
                    }
                }
                Ok(was)
            }
            w => e.drop_indexes(&db, &coll, w),
        })
        .await?;
    Ok(doc! {"nIndexesWas": n as i32})
}

fn scale_of(cmd: &Document) -> Result<u64, CommandError> {
    match cmd.get("scale") {
        None => Ok(1),
        Some(b) => match util::as_i64(b) {
            Some(n) if n >= 1 => Ok(n as u64),
            _ => Err(CommandError::bad_value("scale has to be >= 1")),
        },
    }
}

pub(super) async fn coll_stats(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "collStats", &ctx.db)?.to_owned();
    let scale = scale_of(cmd)?;
    let db = ctx.db.clone();
    let s = ctx.blocking(move |e, _| e.collection_stats(&db, &coll)).await?;
    let sc = |v: u64| (v / scale) as i64;
    let mut sizes = Document::new();
    for (n, v) in &s.index_sizes {
        sizes.insert(n.clone(), sc(*v));
    }
    let mut reply = doc! {
        "ns": s.ns, "count": s.count as i64, "size": sc(s.size), "avgObjSize": s.avg_obj_size as i64,
        "storageSize": sc(s.storage_size), "nindexes": s.nindexes as i32, "totalIndexSize": sc(s.total_index_size),
        "totalSize": sc(s.storage_size + s.total_index_size), "indexSizes": sizes, "scaleFactor": scale as i64, "capped": s.capped.is_some(),
    };
    if let Some((max_size, max)) = s.capped {
        reply.insert("maxSize", sc(max_size));
        reply.insert("max", max.map(|m| m as i64).unwrap_or(0));
    }
    Ok(reply)
}

pub(super) async fn db_stats(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let scale = scale_of(cmd)?;
    let db = ctx.db.clone();
    let s = ctx.blocking(move |e, _| Ok(e.db_stats(&db))).await?;
    let sc = |v: u64| (v / scale) as i64;
    let avg = if s.objects > 0 { s.data_size as f64 / s.objects as f64 } else { 0.0 };
    Ok(doc! {
        "db": s.db, "collections": s.collections as i64, "views": 0i64, "objects": s.objects as i64,
        "avgObjSize": avg, "dataSize": sc(s.data_size), "storageSize": sc(s.storage_size),
        "indexes": s.indexes as i64, "indexSize": sc(s.index_size), "totalSize": sc(s.storage_size + s.index_size),
        "scaleFactor": scale as i64,
    })
}

pub(super) async fn validate(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let coll = util::coll_arg(cmd, "validate", &ctx.db)?.to_owned();
    let db = ctx.db.clone();
    let s = ctx.blocking(move |e, _| e.collection_stats(&db, &coll)).await?;
    Ok(
        doc! {"ns": s.ns, "nrecords": s.count as i64, "nIndexes": s.nindexes as i32, "valid": true, "errors": [], "warnings": []},
    )
}

/// The explain `winningPlan` tree for a plan summary string.
pub fn winning_plan(summary: &str) -> Document {
    if let Some(rest) = summary.strip_prefix("IXSCAN ") {
        return doc! {"stage": "FETCH", "inputStage": {"stage": "IXSCAN", "keyPattern": rest, "planSummary": summary}};
    }
    doc! {"stage": summary.split_whitespace().next().unwrap_or("COLLSCAN"), "planSummary": summary}
}

pub(super) async fn explain(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let inner = util::opt_doc(cmd, "explain")?
        .ok_or_else(|| CommandError::failed_to_parse("explain requires a command object"))?
        .clone();
    let Some(inner_name) = inner.keys().next().cloned() else {
        return Err(CommandError::failed_to_parse("explain requires a command object"));
    };
    // The dispatcher has checked the explained command's privileges (the table's `explain`).
    use super::table::Handler as H;
    let inner_handler = super::table::lookup(&inner_name).map(|c| c.handler);
    let (filter_key, sort_key) = match inner_handler {
        Some(H::Find) => ("filter", "sort"),
        Some(H::Count | H::Distinct) => ("query", ""),
        Some(H::FindAndModify) => ("query", "sort"),
        Some(H::Update | H::Delete | H::Aggregate) => ("", ""),
        _ => {
            return Err(CommandError::new(
                115,
                "CommandNotSupported",
                format!("explain is not supported for {inner_name}"),
            ));
        }
    };
    let coll = util::coll_arg(&inner, &inner_name, &ctx.db)?.to_owned();
    let filter_doc = if filter_key.is_empty() {
        match inner_handler {
            Some(H::Update) => inner
                .get_array("updates")
                .ok()
                .and_then(|a| a.first())
                .and_then(|b| b.as_document())
                .and_then(|d| d.get_document("q").ok())
                .cloned(),
            Some(H::Delete) => inner
                .get_array("deletes")
                .ok()
                .and_then(|a| a.first())
                .and_then(|b| b.as_document())
                .and_then(|d| d.get_document("q").ok())
                .cloned(),
            _ => inner
                .get_array("pipeline")
                .ok()
                .and_then(|a| a.first())
                .and_then(|b| b.as_document())
                .and_then(|d| d.get_document("$match").ok())
                .cloned(),
        }
        .unwrap_or_default()
    } else {
        util::opt_doc(&inner, filter_key)?.cloned().unwrap_or_default()
    };
    let filter = Filter::parse(&filter_doc)?;
    let sort = if sort_key.is_empty() { None } else { sort_of(&inner, sort_key)? };
    let hint = hint_of(&inner)?;
    let db = ctx.db.clone();
    let ns = format!("{db}.{coll}");
    let ns_of = (db.clone(), Some(coll.clone()));
    let collation = options::collation(&inner)?;
    let summary = ctx
        .blocking_in(ns_of, collation, move |e, _| {
            e.plan_summary_checked(&db, &coll, &filter, sort.as_ref(), hint.as_ref())
        })
        .await?;
    ctx.op.set_plan_summary(summary.clone());
    Ok(doc! {
        "explainVersion": "1",
        "queryPlanner": {
            "namespace": ns,
            "parsedQuery": filter_doc,
            "winningPlan": winning_plan(&summary),
            "rejectedPlans": [],
        },
        "command": inner,
        "serverInfo": {"host": &ctx.state.host, "port": i32::from(ctx.state.local_addr.port()), "version": crate::MONGODB_COMPAT_VERSION},
    })
}
