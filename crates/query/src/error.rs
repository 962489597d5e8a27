//! The error type shared by the query, engine and node data paths: a MongoDB server error.
//!
//! Every error carries MongoDB's numeric `code` and `codeName` so that the node can reply with
//! `{ok: 0, errmsg, code, codeName}` exactly as drivers expect. Constructors exist for the codes
//! used throughout the workspace; `location` builds the `Location<code>` errors MongoDB uses for
//! codes without a registered name.

use std::borrow::Cow;

/// A MongoDB server error: numeric code, codeName and message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code_name} ({code}): {message}")]
pub struct CommandError {
    /// MongoDB's numeric error code.
    pub code: i32,
    /// MongoDB's `codeName`, e.g. `BadValue`.
    pub code_name: Cow<'static, str>,
    /// Human-readable message (`errmsg`).
    pub message: String,
    /// Fields mongod adds beside `code` for this error (DuplicateKey's `keyPattern` and
    /// `keyValue`), in a command error reply and in a `writeErrors` element alike.
    pub info: Option<Box<bson::Document>>,
}

/// Result alias with [`CommandError`] as the default error.
pub type Result<T, E = CommandError> = std::result::Result<T, E>;

/// The one table of MongoDB error codes this workspace uses: constant, number, and MongoDB's
/// `codeName` (from the server's `src/mongo/base/error_codes.yml`). [`codes`] and [`code_name`]
/// are generated from it, and [`CommandError::new`] takes the name from it, so a code and its name
/// cannot disagree.
macro_rules! mongo_error_codes {
    ($( ($konst:ident, $code:literal, $name:literal) ),* $(,)?) => {
        /// Numeric codes used by this workspace, named as MongoDB names them.
        pub mod codes {
            $( #[doc = $name] pub const $konst: i32 = $code; )*
        }

        /// MongoDB's `codeName` of a code in the table; `None` for codes MongoDB reports as
        /// `Location<code>`.
        pub fn code_name(code: i32) -> Option<&'static str> {
            match code {
                $( $code => Some($name), )*
                _ => None,
            }
        }

        /// Every (code, name) of the table.
        pub const CODES: &[(i32, &str)] = &[ $( ($code, $name), )* ];
    };
}

mongo_error_codes! {
    (INTERNAL_ERROR, 1, "InternalError"),
    (BAD_VALUE, 2, "BadValue"),
    (NO_SUCH_KEY, 4, "NoSuchKey"),
    (HOST_UNREACHABLE, 6, "HostUnreachable"),
    (HOST_NOT_FOUND, 7, "HostNotFound"),
    (UNKNOWN_ERROR, 8, "UnknownError"),
    (FAILED_TO_PARSE, 9, "FailedToParse"),
    (USER_NOT_FOUND, 11, "UserNotFound"),
    (UNAUTHORIZED, 13, "Unauthorized"),
    (TYPE_MISMATCH, 14, "TypeMismatch"),
    (AUTHENTICATION_FAILED, 18, "AuthenticationFailed"),
    (ILLEGAL_OPERATION, 20, "IllegalOperation"),
    (LOCK_TIMEOUT, 24, "LockTimeout"),
    (NAMESPACE_NOT_FOUND, 26, "NamespaceNotFound"),
    (INDEX_NOT_FOUND, 27, "IndexNotFound"),
    (PATH_NOT_VIABLE, 28, "PathNotViable"),
    (CONFLICTING_UPDATE_OPERATORS, 40, "ConflictingUpdateOperators"),
    (CURSOR_NOT_FOUND, 43, "CursorNotFound"),
    (LOCK_BUSY, 46, "LockBusy"),
    (NO_MATCHING_DOCUMENT, 47, "NoMatchingDocument"),
    (NAMESPACE_EXISTS, 48, "NamespaceExists"),
    (MAX_TIME_MS_EXPIRED, 50, "MaxTimeMSExpired"),
    (DOLLAR_PREFIXED_FIELD_NAME, 52, "DollarPrefixedFieldName"),
    (INVALID_ID_FIELD, 53, "InvalidIdField"),
    (EMPTY_FIELD_NAME, 56, "EmptyFieldName"),
    (DOTTED_FIELD_NAME, 57, "DottedFieldName"),
    (COMMAND_NOT_FOUND, 59, "CommandNotFound"),
    (WRITE_CONCERN_FAILED, 64, "WriteConcernFailed"),
    (IMMUTABLE_FIELD, 66, "ImmutableField"),
    (INVALID_OPTIONS, 72, "InvalidOptions"),
    (INVALID_NAMESPACE, 73, "InvalidNamespace"),
    (UNKNOWN_REPL_WRITE_CONCERN, 79, "UnknownReplWriteConcern"),
    (INDEX_OPTIONS_CONFLICT, 85, "IndexOptionsConflict"),
    (INDEX_KEY_SPECS_CONFLICT, 86, "IndexKeySpecsConflict"),
    (NETWORK_TIMEOUT, 89, "NetworkTimeout"),
    (SHUTDOWN_IN_PROGRESS, 91, "ShutdownInProgress"),
    (UNSATISFIABLE_WRITE_CONCERN, 100, "UnsatisfiableWriteConcern"),
    (WRITE_CONFLICT, 112, "WriteConflict"),
    (COMMAND_NOT_SUPPORTED, 115, "CommandNotSupported"),
    (CONFLICTING_OPERATION_IN_PROGRESS, 117, "ConflictingOperationInProgress"),
    (DOCUMENT_VALIDATION_FAILURE, 121, "DocumentValidationFailure"),
    (NOT_A_REPLICA_SET, 123, "NotAReplicaSet"),
    (FAILED_TO_SATISFY_READ_PREFERENCE, 133, "FailedToSatisfyReadPreference"),
    (READ_CONCERN_MAJORITY_NOT_AVAILABLE_YET, 134, "ReadConcernMajorityNotAvailableYet"),
    (CAPPED_POSITION_LOST, 136, "CappedPositionLost"),
    (INVALID_PIPELINE_OPERATOR, 168, "InvalidPipelineOperator"),
    (QUERY_PLAN_KILLED, 175, "QueryPlanKilled"),
    (PRIMARY_STEPPED_DOWN, 189, "PrimarySteppedDown"),
    (QUERY_FEATURE_NOT_ALLOWED, 224, "QueryFeatureNotAllowed"),
    (RETRY_CHANGE_STREAM, 234, "RetryChangeStream"),
    (CURSOR_KILLED, 237, "CursorKilled"),
    (NO_SUCH_TRANSACTION, 251, "NoSuchTransaction"),
    (EXCEEDED_TIME_LIMIT, 262, "ExceededTimeLimit"),
    (FAIL_POINT_SET_FAILED, 266, "FailPointSetFailed"),
    (CHANGE_STREAM_FATAL_ERROR, 280, "ChangeStreamFatalError"),
    (CHANGE_STREAM_HISTORY_LOST, 286, "ChangeStreamHistoryLost"),
    (API_VERSION_ERROR, 322, "APIVersionError"),
    (API_STRICT_ERROR, 323, "APIStrictError"),
    (API_DEPRECATION_ERROR, 324, "APIDeprecationError"),
    (REAUTHENTICATION_REQUIRED, 391, "ReauthenticationRequired"),
    (SOCKET_EXCEPTION, 9001, "SocketException"),
    (NOT_WRITABLE_PRIMARY, 10107, "NotWritablePrimary"),
    (DUPLICATE_KEY, 11000, "DuplicateKey"),
    (INTERRUPTED_AT_SHUTDOWN, 11600, "InterruptedAtShutdown"),
    (INTERRUPTED, 11601, "Interrupted"),
    (INTERRUPTED_DUE_TO_REPL_STATE_CHANGE, 11602, "InterruptedDueToReplStateChange"),
    (MERGE_STAGE_NO_MATCHING_DOCUMENT, 13113, "MergeStageNoMatchingDocument"),
    (STALE_CONFIG, 13388, "StaleConfig"),
    (NOT_PRIMARY_NO_SECONDARY_OK, 13435, "NotPrimaryNoSecondaryOk"),
    (NOT_PRIMARY_OR_SECONDARY, 13436, "NotPrimaryOrSecondary"),
}

/// Codes MongoDB reports as `Location<code>` (no name in `error_codes.yml`).
pub mod location_codes {
    pub const UNRECOGNIZED_PIPELINE_STAGE: i32 = 40324;
    pub const INVALID_PROJECTION_EXCLUSION: i32 = 31253;
    pub const INVALID_PROJECTION_INCLUSION: i32 = 31254;
}

impl CommandError {
    /// Builds an error from a code, its codeName and a message. For a code of the table the
    /// table's name is used (a differing `code_name` is a programming error, caught in tests).
    pub fn new(code: i32, code_name: &'static str, message: impl Into<String>) -> Self {
        let name = match code_name_of(code) {
            Some(known) => {
                debug_assert_eq!(known, code_name, "code {code} is {known} in MongoDB's table");
                known
            }
            None => code_name,
        };
        CommandError { code, code_name: Cow::Borrowed(name), message: message.into(), info: None }
    }

    /// An error with `code`, named from the table (`Location<code>` when it has no name).
    pub fn with_code(code: i32, message: impl Into<String>) -> Self {
        match code_name_of(code) {
            Some(name) => {
                CommandError { code, code_name: Cow::Borrowed(name), message: message.into(), info: None }
            }
            None => Self::location(code, message),
        }
    }

    /// An error with a code that MongoDB reports as `Location<code>`.
    pub fn location(code: i32, message: impl Into<String>) -> Self {
        CommandError {
            code,
            code_name: Cow::Owned(format!("Location{code}")),
            message: message.into(),
            info: None,
        }
    }

    /// 2 BadValue.
    pub fn bad_value(message: impl Into<String>) -> Self {
        Self::new(codes::BAD_VALUE, "BadValue", message)
    }
    /// 4 NoSuchKey.
    pub fn no_such_key(message: impl Into<String>) -> Self {
        Self::new(codes::NO_SUCH_KEY, "NoSuchKey", message)
    }
    /// 9 FailedToParse.
    pub fn failed_to_parse(message: impl Into<String>) -> Self {
        Self::new(codes::FAILED_TO_PARSE, "FailedToParse", message)
    }
    /// 13 Unauthorized.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(codes::UNAUTHORIZED, "Unauthorized", message)
    }
    /// 14 TypeMismatch.
    pub fn type_mismatch(message: impl Into<String>) -> Self {
        Self::new(codes::TYPE_MISMATCH, "TypeMismatch", message)
    }
    /// 18 AuthenticationFailed.
    pub fn authentication_failed(message: impl Into<String>) -> Self {
        Self::new(codes::AUTHENTICATION_FAILED, "AuthenticationFailed", message)
    }
    /// 20 IllegalOperation.
    pub fn illegal_operation(message: impl Into<String>) -> Self {
        Self::new(codes::ILLEGAL_OPERATION, "IllegalOperation", message)
    }
    /// 26 NamespaceNotFound.
    pub fn namespace_not_found(message: impl Into<String>) -> Self {
        Self::new(codes::NAMESPACE_NOT_FOUND, "NamespaceNotFound", message)
    }
    /// 27 IndexNotFound.
    pub fn index_not_found(message: impl Into<String>) -> Self {
        Self::new(codes::INDEX_NOT_FOUND, "IndexNotFound", message)
    }
    /// 28 PathNotViable.
    pub fn path_not_viable(message: impl Into<String>) -> Self {
        Self::new(codes::PATH_NOT_VIABLE, "PathNotViable", message)
    }
    /// 40 ConflictingUpdateOperators.
    pub fn conflicting_update_operators(message: impl Into<String>) -> Self {
        Self::new(codes::CONFLICTING_UPDATE_OPERATORS, "ConflictingUpdateOperators", message)
    }
    /// 43 CursorNotFound.
    pub fn cursor_not_found(message: impl Into<String>) -> Self {
        Self::new(codes::CURSOR_NOT_FOUND, "CursorNotFound", message)
    }
    /// 47 NoMatchingDocument.
    pub fn no_matching_document(message: impl Into<String>) -> Self {
        Self::new(codes::NO_MATCHING_DOCUMENT, "NoMatchingDocument", message)
    }
    /// 48 NamespaceExists.
    pub fn namespace_exists(message: impl Into<String>) -> Self {
        Self::new(codes::NAMESPACE_EXISTS, "NamespaceExists", message)
    }
    /// 50 MaxTimeMSExpired, "operation exceeded time limit".
    pub fn max_time_ms_expired() -> Self {
        Self::new(codes::MAX_TIME_MS_EXPIRED, "MaxTimeMSExpired", "operation exceeded time limit")
    }
    /// 52 DollarPrefixedFieldName.
    pub fn dollar_prefixed_field_name(message: impl Into<String>) -> Self {
        Self::new(codes::DOLLAR_PREFIXED_FIELD_NAME, "DollarPrefixedFieldName", message)
    }
    /// 56 EmptyFieldName.
    pub fn empty_field_name(message: impl Into<String>) -> Self {
        Self::new(codes::EMPTY_FIELD_NAME, "EmptyFieldName", message)
    }
    /// 59 CommandNotFound.
    pub fn command_not_found(message: impl Into<String>) -> Self {
        Self::new(codes::COMMAND_NOT_FOUND, "CommandNotFound", message)
    }
    /// 66 ImmutableField.
    pub fn immutable_field(message: impl Into<String>) -> Self {
        Self::new(codes::IMMUTABLE_FIELD, "ImmutableField", message)
    }
    /// 72 InvalidOptions.
    pub fn invalid_options(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_OPTIONS, "InvalidOptions", message)
    }
    /// 73 InvalidNamespace.
    pub fn invalid_namespace(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_NAMESPACE, "InvalidNamespace", message)
    }
    /// 85 IndexOptionsConflict.
    pub fn index_options_conflict(message: impl Into<String>) -> Self {
        Self::new(codes::INDEX_OPTIONS_CONFLICT, "IndexOptionsConflict", message)
    }
    /// 86 IndexKeySpecsConflict.
    pub fn index_key_specs_conflict(message: impl Into<String>) -> Self {
        Self::new(codes::INDEX_KEY_SPECS_CONFLICT, "IndexKeySpecsConflict", message)
    }
    /// 53 InvalidIdField.
    pub fn invalid_id_field(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_ID_FIELD, "InvalidIdField", message)
    }
    /// 115 CommandNotSupported.
    pub fn command_not_supported(message: impl Into<String>) -> Self {
        Self::new(codes::COMMAND_NOT_SUPPORTED, "CommandNotSupported", message)
    }
    /// 168 InvalidPipelineOperator.
    pub fn invalid_pipeline_operator(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PIPELINE_OPERATOR, "InvalidPipelineOperator", message)
    }
    /// 11000 DuplicateKey.
    pub fn duplicate_key(message: impl Into<String>) -> Self {
        Self::new(codes::DUPLICATE_KEY, "DuplicateKey", message)
    }
    /// 11600 InterruptedAtShutdown.
    pub fn interrupted_at_shutdown() -> Self {
        Self::new(codes::INTERRUPTED_AT_SHUTDOWN, "InterruptedAtShutdown", "interrupted at shutdown")
    }
    /// 11601 Interrupted, "operation was interrupted".
    pub fn interrupted() -> Self {
        Self::new(codes::INTERRUPTED, "Interrupted", "operation was interrupted")
    }
    /// 40324 "Unrecognized pipeline stage name".
    pub fn unrecognized_stage(name: &str) -> Self {
        Self::location(
            location_codes::UNRECOGNIZED_PIPELINE_STAGE,
            format!("Unrecognized pipeline stage name: '{name}'"),
        )
    }

    /// True for the codes that mean "this operation was stopped" (kill, shutdown, time limit).
    pub fn is_interruption(&self) -> bool {
        matches!(self.code, codes::INTERRUPTED | codes::INTERRUPTED_AT_SHUTDOWN | codes::MAX_TIME_MS_EXPIRED)
    }

    /// The error with mongod's extra fields for it (see [`CommandError::info`]).
    #[must_use]
    pub fn with_info(mut self, info: bson::Document) -> Self {
        self.info = Some(Box::new(info));
        self
    }

    /// The error as the fields of a command reply: `{ok: 0.0, errmsg, code, codeName}` and its
    /// [`CommandError::info`].
    pub fn to_document(&self) -> bson::Document {
        let mut d = bson::doc! {
            "ok": 0.0,
            "errmsg": self.message.clone(),
            "code": self.code,
            "codeName": self.code_name.as_ref(),
        };
        if let Some(info) = &self.info {
            d.extend(info.as_ref().clone());
        }
        d
    }
}

fn code_name_of(code: i32) -> Option<&'static str> {
    code_name(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample of MongoDB's `error_codes.yml`, checked against the table (InvalidIdField was 103
    /// here once; MongoDB's is 53).
    #[test]
    fn the_table_is_mongodbs() {
        for (code, name) in [
            (2, "BadValue"),
            (53, "InvalidIdField"),
            (59, "CommandNotFound"),
            (115, "CommandNotSupported"),
            (11000, "DuplicateKey"),
            (11601, "Interrupted"),
            (50, "MaxTimeMSExpired"),
            (20, "IllegalOperation"),
        ] {
            assert_eq!(code_name(code), Some(name), "{code}");
        }
        let mut seen = std::collections::HashSet::new();
        for (code, name) in CODES {
            assert!(seen.insert(*code), "{code} twice");
            assert_eq!(CommandError::with_code(*code, "x").code_name, *name);
        }
        assert_eq!(CommandError::with_code(31254, "x").code_name, "Location31254");
        assert_eq!(CommandError::invalid_id_field("x").code, 53);
    }

    #[test]
    fn constructors_carry_mongodb_codes() {
        let table: Vec<(CommandError, i32, &str)> = vec![
            (CommandError::bad_value("x"), 2, "BadValue"),
            (CommandError::failed_to_parse("x"), 9, "FailedToParse"),
            (CommandError::type_mismatch("x"), 14, "TypeMismatch"),
            (CommandError::interrupted(), 11601, "Interrupted"),
            (CommandError::interrupted_at_shutdown(), 11600, "InterruptedAtShutdown"),
            (CommandError::max_time_ms_expired(), 50, "MaxTimeMSExpired"),
            (CommandError::namespace_not_found("x"), 26, "NamespaceNotFound"),
            (CommandError::namespace_exists("x"), 48, "NamespaceExists"),
            (CommandError::duplicate_key("x"), 11000, "DuplicateKey"),
            (CommandError::index_not_found("x"), 27, "IndexNotFound"),
            (CommandError::immutable_field("x"), 66, "ImmutableField"),
            (CommandError::invalid_options("x"), 72, "InvalidOptions"),
            (CommandError::conflicting_update_operators("x"), 40, "ConflictingUpdateOperators"),
            (CommandError::location(31254, "x"), 31254, "Location31254"),
            (CommandError::invalid_pipeline_operator("x"), 168, "InvalidPipelineOperator"),
            (CommandError::unrecognized_stage("$foo"), 40324, "Location40324"),
        ];
        for (e, code, name) in table {
            assert_eq!(e.code, code);
            assert_eq!(e.code_name, name);
        }
    }

    #[test]
    fn interrupted_message_is_mongodbs() {
        assert_eq!(CommandError::interrupted().message, "operation was interrupted");
        assert_eq!(CommandError::max_time_ms_expired().message, "operation exceeded time limit");
        assert!(CommandError::interrupted().is_interruption());
        assert!(!CommandError::bad_value("x").is_interruption());
    }

    #[test]
    fn display_and_document() {
        let e = CommandError::bad_value("oops");
        assert_eq!(e.to_string(), "BadValue (2): oops");
        let d = e.to_document();
        assert_eq!(d.get_f64("ok").ok(), Some(0.0));
        assert_eq!(d.get_i32("code").ok(), Some(2));
        assert_eq!(d.get_str("codeName").ok(), Some("BadValue"));
        assert_eq!(d.get_str("errmsg").ok(), Some("oops"));
    }
}
