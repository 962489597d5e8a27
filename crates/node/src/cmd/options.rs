//! What the data commands may carry, checked before they run: nothing is accepted and ignored.
//!
//! Each command's fields are those mongod's IDL parser knows for it (its `*.idl` command
//! definition) plus mongod's generic arguments; any other field fails as mongod fails it, with
//! 40415 "BSON field '<command>.<field>' is an unknown field." (so update's `sort`, which mongod
//! added in 8.0, is unknown to a node that reports 7.0). Of the known fields, those the node does
//! not implement are refused with 115 CommandNotSupported when they ask for something
//! (`$jsonSchema` validators, views, time-series collections, the collation options ICU4X cannot
//! honour), never run as if absent. A command's `let` is
//! parsed here into [`LetVars`].

use bson::{Bson, Document};
use docplane_query::collation::Requested;
use docplane_query::{CommandError, LetVars};

use super::util;

/// mongod's generic command arguments (`generic_argument.idl`), accepted by every command; the
/// dispatcher validates those that ask for something (`maxTimeMS`, `writeConcern`,
/// `readConcern`, `lsid`, the transaction fields).
pub const GENERIC: &[&str] = &[
    "$db",
    "$audit",
    "$client",
    "$clusterTime",
    "$configServerState",
    "$gleStats",
    "$oplogQueryData",
    "$queryOptions",
    "$readPreference",
    "$replData",
    "$topologyTime",
    "$traceCtx",
    "allowImplicitCollectionCreation",
    "apiDeprecationErrors",
    "apiStrict",
    "apiVersion",
    "autocommit",
    "clientOperationKey",
    "comment",
    "databaseVersion",
    "lsid",
    "maxTimeMS",
    "maxTimeMSOpOnly",
    "mayBypassWriteBlocking",
    "readConcern",
    "shardVersion",
    "startTransaction",
    "stmtId",
    "tracking_info",
    "txnNumber",
    "txnRetryCounter",
    "writeConcern",
];

fn unknown(path: &str, field: &str) -> CommandError {
    CommandError::location(40415, format!("BSON field '{path}.{field}' is an unknown field."))
}

fn not_supported(what: &str) -> CommandError {
    CommandError::command_not_supported(format!("{what} is not supported by docplane's node"))
}

/// Fails with 40415 on a field of `d` (the command, or one of its statements at `path`) that is
/// neither its own (`own`, the command's name first for a command) nor, for a command, generic.
fn known(d: &Document, path: &str, own: &[&str], generic: bool) -> Result<(), CommandError> {
    for k in d.keys() {
        let allowed = own.contains(&k.as_str()) || (generic && GENERIC.contains(&k.as_str()));
        if !allowed {
            return Err(unknown(path, k));
        }
    }
    Ok(())
}

/// `collation`: parsed and validated as mongod does (`docplane_query::collation`: its codes,
/// the options ICU4X cannot honour refused with 115); absent, null or `{}` mean the
/// collection's default, `{locale: "simple"}` the binary comparison.
pub fn collation(d: &Document) -> Result<Requested, CommandError> {
    docplane_query::collation::parse(d.get("collation"))
}

/// Refuses a known option the node does not implement when it asks for something (true, a
/// non-empty document, any other value).
fn refuse_if_set(d: &Document, key: &str, what: &str) -> Result<(), CommandError> {
    let set = match d.get(key) {
        None | Some(Bson::Null) => false,
        Some(Bson::Document(x)) => !x.is_empty(),
        Some(b @ (Bson::Boolean(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_))) => util::truthy(b),
        Some(_) => true,
    };
    if set { Err(not_supported(what)) } else { Ok(()) }
}

/// `find`: its fields (find_command.idl), the unimplemented ones refused; returns its `let`.
pub fn find(cmd: &Document) -> Result<LetVars, CommandError> {
    const OWN: &[&str] = &[
        "find",
        "filter",
        "projection",
        "sort",
        "hint",
        "skip",
        "limit",
        "batchSize",
        "singleBatch",
        "max",
        "min",
        "returnKey",
        "showRecordId",
        "tailable",
        "oplogReplay",
        "noCursorTimeout",
        "awaitData",
        "allowPartialResults",
        "collation",
        "allowDiskUse",
        "let",
        "readOnce",
        "allowSpeculativeMajorityRead",
        "term",
        "includeQueryStatsMetrics",
    ];
    known(cmd, "find", OWN, true)?;
    collation(cmd)?;
    refuse_if_set(cmd, "term", "find's term (replication)")?;
    refuse_if_set(cmd, "includeQueryStatsMetrics", "includeQueryStatsMetrics (query stats)")?;
    // Accepted because they change nothing a client can observe on this node, as on a
    // standalone mongod: `readOnce` only tells mongod's storage engine not to keep what it reads
    // in its cache (the node's documents are all in memory, there is no cache to spare);
    // `allowPartialResults` is mongos's (a standalone has every document); `oplogReplay` is
    // ignored by mongod since 4.4. `tailable`, `awaitData`, `noCursorTimeout`, `hint`, `min`/`max`,
    // `returnKey`, `showRecordId` (`cmd/findopts.rs`) and `allowDiskUse` are implemented.
    LetVars::parse(cmd.get("let"))
}

/// `aggregate`: its fields (aggregate.idl); returns its `let`.
pub fn aggregate(cmd: &Document) -> Result<LetVars, CommandError> {
    const OWN: &[&str] = &[
        "aggregate",
        "pipeline",
        "explain",
        "allowDiskUse",
        "cursor",
        "bypassDocumentValidation",
        "collation",
        "hint",
        "let",
        "fromMongos",
        "needsMerge",
        "isMapReduceCommand",
        "includeQueryStatsMetrics",
    ];
    known(cmd, "aggregate", OWN, true)?;
    collation(cmd)?;
    refuse_if_set(cmd, "fromMongos", "aggregate's fromMongos (sharding)")?;
    refuse_if_set(cmd, "needsMerge", "aggregate's needsMerge (sharding)")?;
    refuse_if_set(cmd, "isMapReduceCommand", "mapReduce")?;
    refuse_if_set(cmd, "includeQueryStatsMetrics", "includeQueryStatsMetrics (query stats)")?;
    // `bypassDocumentValidation` is honoured by `$out`/`$merge`'s writes ([`bypass`]); `hint`
    // is honoured by the collection read (2 BadValue when it names no index).
    bypass(cmd)?;
    if let Some(c) = util::opt_doc(cmd, "cursor")? {
        known(c, "aggregate.cursor", &["batchSize"], false)?;
    }
    LetVars::parse(cmd.get("let"))
}

/// `count` (count_command.idl).
pub fn count(cmd: &Document) -> Result<(), CommandError> {
    known(cmd, "count", &["count", "query", "limit", "skip", "hint", "collation", "fields"], true)?;
    collation(cmd).map(|_| ())
}

/// `distinct` (distinct.idl).
pub fn distinct(cmd: &Document) -> Result<(), CommandError> {
    known(cmd, "distinct", &["distinct", "key", "query", "collation", "hint"], true)?;
    collation(cmd).map(|_| ())
}

/// `bypassDocumentValidation` (insert, update, findAndModify, aggregate): a bool or a number
/// (14 otherwise, as mongod's IDL); whether the command's writes skip the collection's
/// validator (`docplane_engine::bypassing_validation`; the privilege is checked by the command
/// table).
pub fn bypass(cmd: &Document) -> Result<bool, CommandError> {
    match cmd.get("bypassDocumentValidation") {
        None | Some(Bson::Null) => Ok(false),
        Some(b @ (Bson::Boolean(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_))) => {
            Ok(util::truthy(b))
        }
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field 'bypassDocumentValidation' is the wrong type '{}', expected types '[bool, long, int, decimal, double]'",
            util::type_name(other)
        ))),
    }
}

/// `insert` (write_commands.idl).
pub fn insert(cmd: &Document) -> Result<(), CommandError> {
    known(cmd, "insert", &["insert", "documents", "ordered", "bypassDocumentValidation"], true)?;
    bypass(cmd).map(|_| ())
}

/// `update` and its statements (write_commands.idl, as mongod 7.0 has them: no statement
/// `sort`); returns the command's `let`.
pub fn update(cmd: &Document) -> Result<LetVars, CommandError> {
    known(cmd, "update", &["update", "updates", "ordered", "bypassDocumentValidation", "let"], true)?;
    bypass(cmd)?;
    if let Some(Bson::Array(stmts)) = cmd.get("updates") {
        for s in stmts {
            if let Bson::Document(s) = s {
                known(
                    s,
                    "update.updates",
                    &[
                        "q",
                        "u",
                        "c",
                        "upsert",
                        "multi",
                        "arrayFilters",
                        "hint",
                        "collation",
                        "upsertSupplied",
                    ],
                    false,
                )?;
                collation(s)?;
            }
        }
    }
    LetVars::parse(cmd.get("let"))
}

/// An update statement's variables: the command's `let` and the statement's `c` (constants of a
/// pipeline update, mongod's `UpdateOpEntry.c`), which take precedence.
pub fn statement_vars(lets: &LetVars, stmt: &Document) -> Result<LetVars, CommandError> {
    match stmt.get("c") {
        None | Some(Bson::Null) => Ok(lets.clone()),
        Some(c) => {
            if !matches!(stmt.get("u"), Some(Bson::Array(_))) {
                return Err(CommandError::failed_to_parse(
                    "Constant values may only be specified for pipeline updates",
                ));
            }
            Ok(lets.with(LetVars::parse(Some(c))?))
        }
    }
}

/// `delete` and its statements; returns the command's `let`.
pub fn delete(cmd: &Document) -> Result<LetVars, CommandError> {
    known(cmd, "delete", &["delete", "deletes", "ordered", "let"], true)?;
    if let Some(Bson::Array(stmts)) = cmd.get("deletes") {
        for s in stmts {
            if let Bson::Document(s) = s {
                known(s, "delete.deletes", &["q", "limit", "hint", "collation"], false)?;
                collation(s)?;
            }
        }
    }
    LetVars::parse(cmd.get("let"))
}

/// `findAndModify` / `findandmodify` (find_and_modify.idl); returns its `let`.
pub fn find_and_modify(cmd: &Document, name: &str) -> Result<LetVars, CommandError> {
    const OWN: &[&str] = &[
        "query",
        "fields",
        "sort",
        "hint",
        "collation",
        "arrayFilters",
        "remove",
        "update",
        "new",
        "upsert",
        "bypassDocumentValidation",
        "let",
    ];
    for k in cmd.keys() {
        if k != name && !OWN.contains(&k.as_str()) && !GENERIC.contains(&k.as_str()) {
            return Err(unknown(name, k));
        }
    }
    collation(cmd)?;
    bypass(cmd)?;
    LetVars::parse(cmd.get("let"))
}

/// `create` (create.idl): the options the node stores and honours (`capped`, `size`, `max`: a
/// capped collection, enforced by the engine;
/// `idIndex`, `storageEngine`, `indexOptionDefaults`, `autoIndexId`, `flags`, `temp`);
/// a validator with its level and action ([`validation`]); views, time-series and encrypted
/// collections are refused; a `collation` is validated here and stored normalized by the engine.
pub fn create(cmd: &Document) -> Result<(), CommandError> {
    const OWN: &[&str] = &[
        "create",
        "capped",
        "size",
        "max",
        "autoIndexId",
        "idIndex",
        "storageEngine",
        "indexOptionDefaults",
        "flags",
        "temp",
        "validator",
        "validationLevel",
        "validationAction",
        "viewOn",
        "pipeline",
        "collation",
        "timeseries",
        "clusteredIndex",
        "expireAfterSeconds",
        "changeStreamPreAndPostImages",
        "encryptedFields",
        "recordIdsReplicated",
    ];
    known(cmd, "create", OWN, true)?;
    collation(cmd)?;
    if cmd.contains_key("viewOn") || cmd.contains_key("pipeline") {
        return Err(not_supported("a view (create with viewOn and pipeline)"));
    }
    for (k, what) in [
        ("timeseries", "a time-series collection"),
        ("expireAfterSeconds", "expireAfterSeconds (time-series and clustered collections)"),
        ("encryptedFields", "queryable encryption (encryptedFields)"),
        ("recordIdsReplicated", "recordIdsReplicated"),
    ] {
        refuse_if_set(cmd, k, what)?;
    }
    clustered_index(cmd)?;
    capped(cmd)?;
    // Change streams are refused (`$changeStream`), so whether pre- and post-images would be
    // recorded for them can never be observed: the option is validated and stored.
    match cmd.get("changeStreamPreAndPostImages") {
        None | Some(Bson::Null) => {}
        Some(Bson::Document(d)) if matches!(d.get("enabled"), Some(Bson::Boolean(_))) && d.len() == 1 => {}
        Some(_) => {
            return Err(CommandError::failed_to_parse(
                "BSON field 'changeStreamPreAndPostImages' must be {enabled: <bool>}",
            ));
        }
    }
    validation(cmd, "create")?;
    Ok(())
}

/// `create`'s `capped`, `size` and `max` as mongod 7.0's IDL and `create` check them (`size` in
/// [1, 1 PB], required when capped; `max` < 2^31), returned as mongod stores them: for a capped
/// collection `{capped: true, size: <rounded up to a multiple of 256>, max}` (`max` only when
/// positive), nothing for another.
pub fn capped(cmd: &Document) -> Result<Option<Document>, CommandError> {
    const PB: i64 = 1 << 50;
    let num = |k: &str| -> Result<Option<i64>, CommandError> {
        match cmd.get(k) {
            None | Some(Bson::Null) => Ok(None),
            Some(b @ (Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_))) => {
                util::as_i64(b).map(Some).ok_or_else(|| {
                    CommandError::bad_value(format!("BSON field 'create.{k}' must be a whole number"))
                })
            }
            Some(other) => Err(CommandError::type_mismatch(format!(
                "BSON field 'create.{k}' is the wrong type '{}', expected types '[long, int, decimal, double]'",
                util::type_name(other)
            ))),
        }
    };
    let size = num("size")?;
    let max = num("max")?;
    if let Some(n) = size
        && !(1..=PB).contains(&n)
    {
        let bound = if n < 1 { "value must be >= 1" } else { "value must be <= 1125899906842624" };
        return Err(CommandError::location(
            51024,
            format!("BSON field 'create.size' {bound}, actual value '{n}'"),
        ));
    }
    if let Some(n) = max
        && n >= 1 << 31
    {
        return Err(CommandError::location(
            51024,
            format!("BSON field 'create.max' value must be < 2147483648, actual value '{n}'"),
        ));
    }
    let is_capped = match cmd.get("capped") {
        None | Some(Bson::Null) => false,
        Some(Bson::Boolean(b)) => *b,
        Some(b @ (Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_))) => util::truthy(b),
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'create.capped' is the wrong type '{}', expected type 'bool'",
                util::type_name(other)
            )));
        }
    };
    if !is_capped {
        return Ok(None);
    }
    let Some(size) = size else {
        return Err(CommandError::invalid_options("the 'size' field is required when 'capped' is true"));
    };
    let rounded = (size + 0xff) & !0xff;
    let number = |n: i64| i32::try_from(n).map(Bson::Int32).unwrap_or(Bson::Int64(n));
    let mut d = bson::doc! {"capped": true, "size": number(rounded)};
    if let Some(m) = max.filter(|m| *m > 0) {
        d.insert("max", number(m));
    }
    Ok(Some(d))
}

/// `create`'s `clusteredIndex`: the engine keeps every collection as an ordered map by `_id`, which
/// is what a clustered collection is, so the one clustered index mongod allows (`{key: {_id: 1},
/// unique: true}`, optional `name`) is accepted; returned as mongod stores it (`v: 2`, the name
/// defaulting to `_id_`), `None` without one.
pub fn clustered_index(cmd: &Document) -> Result<Option<Document>, CommandError> {
    let spec = match cmd.get("clusteredIndex") {
        None | Some(Bson::Null) => return Ok(None),
        Some(Bson::Document(d)) => d,
        Some(Bson::Boolean(_)) => {
            return Err(not_supported("clusteredIndex: <bool> (only {key: {_id: 1}, unique: true})"));
        }
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'create.clusteredIndex' is the wrong type '{}', expected type 'object'",
                util::type_name(other)
            )));
        }
    };
    known(spec, "create.clusteredIndex", &["key", "unique", "name", "v"], false)?;
    let key_ok = spec
        .get_document("key")
        .is_ok_and(|k| k.len() == 1 && k.get("_id").and_then(util::as_i64) == Some(1));
    if !key_ok {
        return Err(CommandError::invalid_options(
            "The clusteredIndex option is only supported for key: {_id: 1}",
        ));
    }
    if !matches!(spec.get("unique"), Some(Bson::Boolean(true))) {
        return Err(CommandError::invalid_options("The clusteredIndex option requires unique: true"));
    }
    let name = match spec.get("name") {
        None => "_id_".to_owned(),
        Some(Bson::String(n)) => n.clone(),
        Some(_) => return Err(CommandError::type_mismatch("clusteredIndex.name must be a string")),
    };
    Ok(Some(bson::doc! {"v": 2, "key": {"_id": 1}, "name": name, "unique": true}))
}

fn enum_error(command: &str, field: &str, v: &Bson, allowed: &str) -> CommandError {
    match v {
        Bson::String(s) => CommandError::bad_value(format!(
            "Enumeration value '{s}' for field '{command}.{field}' is not a valid value (one of {allowed})."
        )),
        other => CommandError::type_mismatch(format!(
            "BSON field '{command}.{field}' is the wrong type '{}', expected type 'string'",
            util::type_name(other)
        )),
    }
}

/// `validator`, `validationLevel`, `validationAction` of `create` or `collMod`, as mongod
/// checks them: the validator an object (14), parsed as a filter with mongod's refusals
/// (`docplane_query::validator::parse_validator`: 224 for `$where`, `$text`, `$near`, ...,
/// 115 for `$jsonSchema`); the level and action from their enumerations (2 BadValue).
pub fn validation(cmd: &Document, command: &str) -> Result<(), CommandError> {
    match cmd.get("validator") {
        None | Some(Bson::Null) => {}
        Some(Bson::Document(v)) => {
            docplane_query::validator::parse_validator(v)?;
        }
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field '{command}.validator' is the wrong type '{}', expected type 'object'",
                util::type_name(other)
            )));
        }
    }
    match cmd.get("validationLevel") {
        None | Some(Bson::Null) => {}
        Some(Bson::String(s)) if docplane_query::validator::Level::parse(s).is_some() => {}
        Some(other) => return Err(enum_error(command, "validationLevel", other, "strict, moderate, off")),
    }
    match cmd.get("validationAction") {
        None | Some(Bson::Null) => {}
        Some(Bson::String(s)) if docplane_query::validator::Action::parse(s).is_some() => {}
        Some(other) => return Err(enum_error(command, "validationAction", other, "error, warn")),
    }
    Ok(())
}

/// `collMod` (coll_mod.idl): the validation settings are implemented; its other options
/// (index changes, views, TTL, time-series, capped resizing, pre- and post-images, `dryRun`)
/// are refused with 115 rather than accepted and ignored. Returns the settings to apply.
pub fn coll_mod(cmd: &Document) -> Result<Document, CommandError> {
    const SETTINGS: &[&str] = &["validator", "validationLevel", "validationAction"];
    const REFUSED: &[&str] = &[
        "index",
        "viewOn",
        "pipeline",
        "changeStreamPreAndPostImages",
        "expireAfterSeconds",
        "timeseries",
        "timeseriesBucketsMayHaveMixedSchemaData",
        "dryRun",
        "cappedSize",
        "cappedMax",
        "recordIdsReplicated",
    ];
    let mut own: Vec<&str> = vec!["collMod"];
    own.extend(SETTINGS);
    own.extend(REFUSED);
    known(cmd, "collMod", &own, true)?;
    for k in REFUSED {
        if cmd.contains_key(*k) {
            return Err(not_supported(&format!("collMod's {k}")));
        }
    }
    validation(cmd, "collMod")?;
    Ok(cmd
        .iter()
        .filter(|(k, v)| SETTINGS.contains(&k.as_str()) && !matches!(v, Bson::Null))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use bson::doc;

    use super::*;

    #[test]
    fn unknown_fields_fail_as_mongod_fails_them() {
        let e = find(&doc! {"find": "c", "filter": {}, "bogus": 1, "$db": "d"}).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (40415, "BSON field 'find.bogus' is an unknown field."));
        assert!(find(&doc! {"find": "c", "lsid": {}, "$db": "d", "comment": "x", "batchSize": 0}).is_ok());
        // mongod 7.0 has no update statement `sort`.
        let e = update(&doc! {"update": "c", "updates": [{"q": {}, "u": {}, "sort": {"a": 1}}]}).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (40415, "BSON field 'update.updates.sort' is an unknown field.")
        );
        assert_eq!(
            delete(&doc! {"delete": "c", "deletes": [{"q": {}, "limit": 0, "x": 1}]}).unwrap_err().code,
            40415
        );
        assert_eq!(insert(&doc! {"insert": "c", "documents": [], "x": 1}).unwrap_err().code, 40415);
        assert_eq!(count(&doc! {"count": "c", "x": 1}).unwrap_err().code, 40415);
        assert_eq!(distinct(&doc! {"distinct": "c", "key": "a", "x": 1}).unwrap_err().code, 40415);
        assert_eq!(
            find_and_modify(&doc! {"findAndModify": "c", "x": 1}, "findAndModify").unwrap_err().code,
            40415
        );
        assert!(find_and_modify(&doc! {"findandmodify": "c", "remove": true}, "findandmodify").is_ok());
        assert_eq!(
            aggregate(&doc! {"aggregate": "c", "pipeline": [], "cursor": {"batchSize": 1, "x": 1}})
                .unwrap_err()
                .message,
            "BSON field 'aggregate.cursor.x' is an unknown field."
        );
    }

    #[test]
    fn unimplemented_options_are_refused() {
        let cmd = doc! {"find": "c", "collation": {"locale": "en_US", "backwards": true}};
        assert_eq!(find(&cmd).unwrap_err().code, 115, "{cmd}");
        // What asks for nothing is accepted.
        assert!(
            find(&doc! {"find": "c", "min": {}, "returnKey": false, "collation": {"locale": "simple"}})
                .is_ok()
        );
        assert_eq!(find(&doc! {"find": "c", "collation": 1}).unwrap_err().code, 14);
        assert!(find(&doc! {"find": "c", "collation": {}}).is_ok());
        assert_eq!(find(&doc! {"find": "c", "collation": {"strength": 1}}).unwrap_err().code, 40414);
        assert!(find(&doc! {"find": "c", "collation": {"locale": "en_US", "strength": 2}}).is_ok());
        let stmt = doc! {"q": {}, "u": {}, "collation": {"locale": "fr", "bogus": 1}};
        assert_eq!(update(&doc! {"update": "c", "updates": [stmt]}).unwrap_err().code, 40415);
        let stmt = doc! {"q": {}, "limit": 0, "collation": {"locale": "zz"}};
        assert_eq!(delete(&doc! {"delete": "c", "deletes": [stmt]}).unwrap_err().code, 2);
    }

    #[test]
    fn coll_mod_fields() {
        let got =
            coll_mod(&doc! {"collMod": "c", "validator": {"a": 1}, "validationLevel": "off", "comment": 1});
        assert_eq!(got.unwrap(), doc! {"validator": {"a": 1}, "validationLevel": "off"});
        assert_eq!(coll_mod(&doc! {"collMod": "c", "index": {"name": "a_1"}}).unwrap_err().code, 115);
        assert_eq!(coll_mod(&doc! {"collMod": "c", "bogus": 1}).unwrap_err().code, 40415);
        assert_eq!(coll_mod(&doc! {"collMod": "c", "validationLevel": "lax"}).unwrap_err().code, 2);
        assert_eq!(
            coll_mod(&doc! {"collMod": "c", "validator": {"$text": {"$search": "x"}}}).unwrap_err().code,
            224
        );
    }

    #[test]
    fn create_refuses_what_it_would_not_keep() {
        assert!(create(&doc! {"create": "c", "capped": true, "size": 4096}).is_ok());
        assert!(
            create(&doc! {"create": "c", "validationLevel": "strict", "validationAction": "error"}).is_ok()
        );
        assert!(
            create(
                &doc! {"create": "c", "validator": {"a": {"$exists": true}}, "validationLevel": "moderate"}
            )
            .is_ok()
        );
        assert_eq!(create(&doc! {"create": "c", "validator": {"$where": "1"}}).unwrap_err().code, 224);
        assert_eq!(create(&doc! {"create": "c", "validator": 7}).unwrap_err().code, 14);
        assert_eq!(create(&doc! {"create": "c", "validationAction": "shout"}).unwrap_err().code, 2);
        for o in [
            doc! {"viewOn": "c", "pipeline": []},
            doc! {"validator": {"$jsonSchema": {}}},
            doc! {"timeseries": {"timeField": "t"}},
            doc! {"clusteredIndex": true},
        ] {
            let mut cmd = doc! {"create": "v"};
            cmd.extend(o.clone());
            assert_eq!(create(&cmd).unwrap_err().code, 115, "{o}");
        }
        assert_eq!(create(&doc! {"create": "c", "validationLevel": "lax"}).unwrap_err().code, 2);
        assert!(create(&doc! {"create": "c", "collation": {"locale": "de"}}).is_ok());
        assert_eq!(create(&doc! {"create": "c", "nope": 1}).unwrap_err().code, 40415);
        assert!(create(&doc! {"create": "c", "changeStreamPreAndPostImages": {"enabled": true}}).is_ok());
        let ci = doc! {"create": "c", "clusteredIndex": {"key": {"_id": 1}, "unique": true, "name": "ci"}};
        assert!(create(&ci).is_ok());
        assert_eq!(
            clustered_index(&ci).unwrap(),
            Some(doc! {"v": 2, "key": {"_id": 1}, "name": "ci", "unique": true})
        );
        let bad = doc! {"create": "c", "clusteredIndex": {"key": {"a": 1}, "unique": true}};
        assert_eq!(clustered_index(&bad).unwrap_err().code, 72);
    }

    #[test]
    fn capped_options_are_checked_and_normalized_as_mongod_stores_them() {
        assert_eq!(
            capped(&doc! {"create": "c", "capped": true, "size": 1000, "max": 5}).unwrap(),
            Some(doc! {"capped": true, "size": 1024, "max": 5})
        );
        assert_eq!(
            capped(&doc! {"create": "c", "capped": true, "size": 4096, "max": 0}).unwrap(),
            Some(doc! {"capped": true, "size": 4096})
        );
        assert_eq!(capped(&doc! {"create": "c", "capped": false, "size": 4096}).unwrap(), None);
        assert_eq!(capped(&doc! {"create": "c", "capped": true}).unwrap_err().code, 72);
        assert_eq!(capped(&doc! {"create": "c", "capped": true, "size": 0}).unwrap_err().code, 51024);
        assert_eq!(
            capped(&doc! {"create": "c", "capped": true, "size": 10, "max": 1i64 << 31}).unwrap_err().code,
            51024
        );
        assert_eq!(capped(&doc! {"create": "c", "capped": "yes", "size": 10}).unwrap_err().code, 14);
        assert_eq!(create(&doc! {"create": "c", "capped": true}).unwrap_err().code, 72);
    }

    #[test]
    fn options_without_effect_are_typed_and_the_unimplemented_refused() {
        assert!(insert(&doc! {"insert": "c", "documents": [], "bypassDocumentValidation": true}).is_ok());
        let e = insert(&doc! {"insert": "c", "documents": [], "bypassDocumentValidation": "x"}).unwrap_err();
        assert_eq!(e.code, 14);
        let e = update(&doc! {"update": "c", "updates": [], "bypassDocumentValidation": {}}).unwrap_err();
        assert_eq!(e.code, 14);
        assert!(find(&doc! {"find": "c", "readOnce": true, "allowPartialResults": true}).is_ok());
        assert_eq!(find(&doc! {"find": "c", "includeQueryStatsMetrics": true}).unwrap_err().code, 115);
        let agg = doc! {"aggregate": "c", "pipeline": [], "cursor": {}, "includeQueryStatsMetrics": true};
        assert_eq!(aggregate(&agg).unwrap_err().code, 115);
    }

    #[test]
    fn statement_constants_extend_the_command_let() {
        let lets = LetVars::parse(Some(&Bson::Document(doc! {"a": 1, "b": 2}))).unwrap();
        let s = doc! {"q": {}, "u": [{"$set": {"x": "$$b"}}], "c": {"b": 3}};
        let v = statement_vars(&lets, &s).unwrap();
        assert_eq!(v.names(), vec!["a".to_owned(), "b".to_owned(), "b".to_owned()]);
        let s = doc! {"q": {}, "u": {"$set": {"x": 1}}, "c": {"b": 3}};
        assert_eq!(statement_vars(&lets, &s).unwrap_err().code, 9);
    }
}
