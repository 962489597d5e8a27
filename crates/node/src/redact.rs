//! Redaction of secrets in command documents before they are shown anywhere: error messages
//! (mongod echoes the command in "not authorized" errors), logs and `currentOp`.
//!
//! What counts as a secret (each value is replaced by the string `"xxx"`, as mongod does):
//! - `pwd` (createUser, updateUser),
//! - `payload` (saslStart, saslContinue: SCRAM messages carry the client proof),
//! - `speculativeAuthenticate.payload` (hello / isMaster with speculative authentication),
//! - the same fields inside an `explain` command's inner command.
//!
//! Only these exact places are redacted: a user document that happens to have a `payload` field
//! (say in `insert.documents`) is data, not a credential, and is shown as it is.

use bson::{Bson, Document};

/// The text that replaces a secret.
pub const REDACTED: &str = "xxx";

/// Top-level fields whose value is a secret in any command.
const SECRET_FIELDS: &[&str] = &["pwd", "payload"];
/// Sub-documents (at the top level) that carry a secret `payload`.
const SECRET_PARENTS: &[&str] = &["speculativeAuthenticate"];

/// Whether `cmd` holds a field that [`redact_command`] would replace (cheap: looks at the top
/// level and the few known sub-documents only).
pub fn needs_redaction(cmd: &Document) -> bool {
    level_needs_redaction(cmd)
        || matches!(cmd.get("explain"), Some(Bson::Document(inner)) if level_needs_redaction(inner))
}

fn level_needs_redaction(d: &Document) -> bool {
    SECRET_FIELDS.iter().any(|k| d.contains_key(k))
        || SECRET_PARENTS
            .iter()
            .any(|p| matches!(d.get(p), Some(Bson::Document(sub)) if sub.contains_key("payload")))
}

/// A copy of `cmd` with its secrets replaced by `"xxx"`; field order and everything else kept.
pub fn redact_command(cmd: &Document) -> Document {
    let mut out = redact_level(cmd);
    if let Some(Bson::Document(inner)) = out.get_mut("explain") {
        *inner = redact_level(inner);
    }
    out
}

fn redact_level(d: &Document) -> Document {
    d.iter()
        .map(|(k, v)| {
            let v = if SECRET_FIELDS.contains(&k.as_str()) {
                Bson::String(REDACTED.to_owned())
            } else if SECRET_PARENTS.contains(&k.as_str())
                && let Bson::Document(sub) = v
            {
                let mut sub = sub.clone();
                if let Some(p) = sub.get_mut("payload") {
                    *p = Bson::String(REDACTED.to_owned());
                }
                Bson::Document(sub)
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::{Binary, doc, spec::BinarySubtype};

    fn bin(b: &[u8]) -> Bson {
        Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: b.to_vec() })
    }

    #[test]
    fn passwords_are_redacted_keeping_order_and_other_fields() {
        let cmd = doc! {"createUser": "u", "pwd": "s3cret", "roles": ["read"], "$db": "t"};
        assert!(needs_redaction(&cmd));
        let r = redact_command(&cmd);
        assert_eq!(r, doc! {"createUser": "u", "pwd": "xxx", "roles": ["read"], "$db": "t"});
        assert_eq!(r.keys().collect::<Vec<_>>(), cmd.keys().collect::<Vec<_>>());
        let r = redact_command(&doc! {"updateUser": "u", "pwd": "other", "customData": {"a": 1}});
        assert_eq!(r, doc! {"updateUser": "u", "pwd": "xxx", "customData": {"a": 1}});
    }

    #[test]
    fn sasl_payloads_are_redacted() {
        let cmd = doc! {"saslContinue": 1, "conversationId": 1, "payload": bin(b"c=biws,r=abc,p=proof")};
        assert_eq!(redact_command(&cmd), doc! {"saslContinue": 1, "conversationId": 1, "payload": "xxx"});
        let hello = doc! {
            "hello": 1,
            "speculativeAuthenticate": {"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": bin(b"n,,n=u,r=x"), "db": "admin"},
        };
        assert!(needs_redaction(&hello));
        let r = redact_command(&hello);
        let spec = r.get_document("speculativeAuthenticate").unwrap();
        assert_eq!(spec.get_str("payload").unwrap(), "xxx");
        assert_eq!(spec.get_str("mechanism").unwrap(), "SCRAM-SHA-256");
    }

    #[test]
    fn explain_inner_command_is_redacted() {
        let cmd = doc! {"explain": {"createUser": "u", "pwd": "p"}, "verbosity": "queryPlanner"};
        assert!(needs_redaction(&cmd));
        assert_eq!(
            redact_command(&cmd),
            doc! {"explain": {"createUser": "u", "pwd": "xxx"}, "verbosity": "queryPlanner"}
        );
    }

    #[test]
    fn data_fields_and_commands_without_secrets_are_untouched() {
        let cmd = doc! {"insert": "c", "documents": [{"payload": "data", "pwd": "not a credential"}]};
        assert!(!needs_redaction(&cmd));
        assert_eq!(redact_command(&cmd), cmd);
        let hello = doc! {"hello": 1, "speculativeAuthenticate": {"db": "admin"}};
        assert!(!needs_redaction(&hello));
        assert_eq!(redact_command(&hello), hello);
        assert_eq!(redact_command(&doc! {}), doc! {});
    }
}
