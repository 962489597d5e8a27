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
}

/// Result alias with [`CommandError`] as the default error.
pub type Result<T, E = CommandError> = std::result::Result<T, E>;

/// Numeric codes used by this workspace, named as MongoDB names them.
pub mod codes {
    pub const BAD_VALUE: i32 = 2;
    pub const NO_SUCH_KEY: i32 = 4;
    pub const FAILED_TO_PARSE: i32 = 9;
    pub const UNAUTHORIZED: i32 = 13;
    pub const TYPE_MISMATCH: i32 = 14;
    pub const AUTHENTICATION_FAILED: i32 = 18;
    pub const ILLEGAL_OPERATION: i32 = 20;
    pub const NAMESPACE_NOT_FOUND: i32 = 26;
    pub const INDEX_NOT_FOUND: i32 = 27;
    pub const PATH_NOT_VIABLE: i32 = 28;
    pub const CONFLICTING_UPDATE_OPERATORS: i32 = 40;
    pub const CURSOR_NOT_FOUND: i32 = 43;
    pub const NAMESPACE_EXISTS: i32 = 48;
    pub const MAX_TIME_MS_EXPIRED: i32 = 50;
    pub const DOLLAR_PREFIXED_FIELD_NAME: i32 = 52;
    pub const EMPTY_FIELD_NAME: i32 = 56;
    pub const DOTTED_FIELD_NAME: i32 = 57;
    pub const COMMAND_NOT_FOUND: i32 = 59;
    pub const IMMUTABLE_FIELD: i32 = 66;
    pub const INVALID_OPTIONS: i32 = 72;
    pub const INVALID_NAMESPACE: i32 = 73;
    pub const INDEX_OPTIONS_CONFLICT: i32 = 85;
    pub const INDEX_KEY_SPECS_CONFLICT: i32 = 86;
    pub const INVALID_ID_FIELD: i32 = 103;
    pub const CONFLICTING_OPERATION_IN_PROGRESS: i32 = 117;
    pub const COMMAND_NOT_SUPPORTED: i32 = 115;
    pub const INVALID_PIPELINE_OPERATOR: i32 = 168;
    pub const INTERRUPTED_AT_SHUTDOWN: i32 = 11600;
    pub const INTERRUPTED: i32 = 11601;
    pub const DUPLICATE_KEY: i32 = 11000;
    pub const NO_MATCHING_DOCUMENT: i32 = 47;
    pub const UNRECOGNIZED_PIPELINE_STAGE: i32 = 40324;
    pub const INVALID_PROJECTION_EXCLUSION: i32 = 31253;
    pub const INVALID_PROJECTION_INCLUSION: i32 = 31254;
}

impl CommandError {
    /// Builds an error from a code, its codeName and a message.
    pub fn new(code: i32, code_name: &'static str, message: impl Into<String>) -> Self {
        CommandError { code, code_name: Cow::Borrowed(code_name), message: message.into() }
    }

    /// An error with a code that MongoDB reports as `Location<code>`.
    pub fn location(code: i32, message: impl Into<String>) -> Self {
        CommandError { code, code_name: Cow::Owned(format!("Location{code}")), message: message.into() }
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
    /// 103 InvalidIdField.
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
            codes::UNRECOGNIZED_PIPELINE_STAGE,
            format!("Unrecognized pipeline stage name: '{name}'"),
        )
    }

    /// True for the codes that mean "this operation was stopped" (kill, shutdown, time limit).
    pub fn is_interruption(&self) -> bool {
        matches!(self.code, codes::INTERRUPTED | codes::INTERRUPTED_AT_SHUTDOWN | codes::MAX_TIME_MS_EXPIRED)
    }

    /// The error as the fields of a command reply: `{ok: 0.0, errmsg, code, codeName}`.
    pub fn to_document(&self) -> bson::Document {
        bson::doc! {
            "ok": 0.0,
            "errmsg": self.message.clone(),
            "code": self.code,
            "codeName": self.code_name.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
