//! Errors of the codec. Each one means the peer sent something we cannot frame or parse; the server closes
//! only that connection and logs the reason (the `Display` text).

/// A framing or parsing failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The declared message length exceeds the maximum message size.
    #[error("message length {len} exceeds maxMessageSizeBytes {max}")]
    TooLarge { len: usize, max: usize },
    /// The declared message length is below the header size or negative.
    #[error("invalid message length {0}")]
    BadLength(i64),
    /// An opcode we do not speak.
    #[error("unsupported opcode {0}")]
    UnsupportedOpCode(i32),
    /// The body did not parse.
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    /// OP_MSG flag bits in the required range that we do not know.
    #[error("unknown required OP_MSG flag bits {0:#x}")]
    UnknownRequiredFlags(u32),
    /// The CRC-32C trailer did not match.
    #[error("OP_MSG checksum mismatch: expected {expected:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { expected: u32, computed: u32 },
    /// A BSON document that cannot be encoded (for encode only).
    #[error("cannot encode document: {0}")]
    Encode(String),
}

impl WireError {
    pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        WireError::Malformed { what, detail: detail.into() }
    }
}
