//! Session ids: what the vendor API calls a session's `id`, parsed and validated for a node kind.
//!
//! An id is a decimal opid on mongod, `"<shard>:<opid>"` on mongos, or one of the ids docplane
//! gives entries without an opid (`connN` for an idle connection, `lsid:<uuid>` for an idle
//! session holding transaction state), accepted only so that a request naming one is refused as
//! inactive rather than as malformed.

use std::collections::HashSet;

use docplane_driver::NodeKind;
use mongodb::bson::{Bson, Document, doc};

use crate::error::{Result, SessionError};
use crate::record::{is_connection_desc, is_idle_session_id};

/// Most session ids one kill request may carry.
pub const MAX_KILL_IDS: usize = 1000;

/// A validated session id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionId {
    /// A mongod opid.
    Local(i64),
    /// A mongos id: shard name and the opid on that shard.
    Shard {
        /// Shard name.
        shard: String,
        /// Opid on the shard.
        opid: i64,
    },
    /// An entry without an opid as docplane lists it: an idle connection (`conn12`) or an idle
    /// session (`lsid:<uuid>`). Never killable; accepted only so that a request naming one is
    /// refused as inactive rather than as malformed.
    Idle(String),
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionId::Local(n) => write!(f, "{n}"),
            SessionId::Shard { shard, opid } => write!(f, "{shard}:{opid}"),
            SessionId::Idle(text) => f.write_str(text),
        }
    }
}

/// Parses a decimal opid: optional `-`, 1..=10 digits, within MongoDB's 32-bit opid space
/// (signed or unsigned reading).
fn parse_opid(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = text.parse().ok()?;
    (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&n).then_some(n)
}

fn valid_shard_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| !c.is_control() && !c.is_whitespace() && c != ':')
}

impl SessionId {
    /// Parses one id for a node of `kind`.
    pub fn parse(text: &str, kind: NodeKind) -> Option<Self> {
        if is_connection_desc(text) || is_idle_session_id(text) {
            return Some(SessionId::Idle(text.to_owned()));
        }
        match kind {
            NodeKind::Mongod => parse_opid(text).map(SessionId::Local),
            NodeKind::Mongos => {
                let (shard, opid) = text.split_once(':')?;
                if !valid_shard_name(shard) {
                    return None;
                }
                Some(SessionId::Shard { shard: shard.to_owned(), opid: parse_opid(opid)? })
            }
        }
    }

    /// The node kind this id belongs to (`None` for idle ids, valid on both).
    pub fn kind(&self) -> Option<NodeKind> {
        match self {
            SessionId::Local(_) => Some(NodeKind::Mongod),
            SessionId::Shard { .. } => Some(NodeKind::Mongos),
            SessionId::Idle(_) => None,
        }
    }

    /// The value of `killOp`'s `op` and of `currentOp`'s `opid`: Int32 when it fits (Int64
    /// otherwise) on mongod; the `"shard:opid"` string on mongos; `None` for idle ids.
    pub fn op_value(&self) -> Option<Bson> {
        match self {
            SessionId::Local(n) => Some(match i32::try_from(*n) {
                Ok(small) => Bson::Int32(small),
                Err(_) => Bson::Int64(*n),
            }),
            SessionId::Shard { .. } => Some(Bson::String(self.to_string())),
            SessionId::Idle(_) => None,
        }
    }
}

/// Validates a kill request's id list: non-empty, at most [`MAX_KILL_IDS`], every id
/// well-formed for `kind` (all malformed ones are named). Duplicates collapse, first order kept.
pub fn parse_session_ids(raw: &[String], kind: NodeKind) -> Result<Vec<SessionId>> {
    if raw.is_empty() {
        return Err(SessionError::InvalidRequest("sessions must contain at least one id".into()));
    }
    if raw.len() > MAX_KILL_IDS {
        return Err(SessionError::InvalidRequest(format!(
            "sessions may contain at most {MAX_KILL_IDS} ids, got {}",
            raw.len()
        )));
    }
    let mut invalid = Vec::new();
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    for text in raw {
        match SessionId::parse(text, kind) {
            Some(id) => {
                if seen.insert(id.clone()) {
                    ids.push(id);
                }
            }
            None => {
                if !invalid.contains(text) {
                    invalid.push(text.clone());
                }
            }
        }
    }
    if invalid.is_empty() { Ok(ids) } else { Err(SessionError::InvalidSessionIds(invalid)) }
}

/// The `$match` / command predicate selecting the given session ids.
pub fn opid_predicate(ids: &[SessionId]) -> Document {
    let values: Vec<Bson> = ids.iter().filter_map(SessionId::op_value).collect();
    doc! {"opid": {"$in": values}}
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn mongod_ids() {
        let ids =
            parse_session_ids(&strings(&["34631", "34703", "34631", "0034703"]), NodeKind::Mongod).unwrap();
        assert_eq!(ids, vec![SessionId::Local(34631), SessionId::Local(34703)]);
        assert_eq!(ids[0].op_value(), Some(Bson::Int32(34631)));
        assert_eq!(SessionId::Local(3_000_000_000).op_value(), Some(Bson::Int64(3_000_000_000)));
        let idle = parse_session_ids(
            &strings(&["conn12", "lsid:00010203-0405-0607-0809-0a0b0c0d0e0f"]),
            NodeKind::Mongod,
        )
        .unwrap();
        assert_eq!(idle[0], SessionId::Idle("conn12".into()));
        assert_eq!(idle[1].op_value(), None);
        assert_eq!(idle[1].kind(), None);
        let err = parse_session_ids(
            &strings(&["1", "abc", "", "1.5", "+3", "99999999999", "sh:1", "abc"]),
            NodeKind::Mongod,
        )
        .unwrap_err();
        assert_eq!(
            err,
            SessionError::InvalidSessionIds(strings(&["abc", "", "1.5", "+3", "99999999999", "sh:1"]))
        );
        assert!(SessionId::parse("-5", NodeKind::Mongod).is_some());
        assert!(SessionId::parse("4294967295", NodeKind::Mongod).is_some());
        assert!(SessionId::parse("4294967296", NodeKind::Mongod).is_none());
    }

    #[test]
    fn mongos_ids() {
        let ids =
            parse_session_ids(&strings(&["shard01:12", "shard01:12", "rs-2:7"]), NodeKind::Mongos).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0].to_string(), "shard01:12");
        assert_eq!(ids[0].op_value(), Some(Bson::String("shard01:12".into())));
        assert_eq!(ids[1].kind(), Some(NodeKind::Mongos));
        for bad in ["12", ":12", "shard01:", "a:b", "sh ard:1", "a:1:2"] {
            assert!(SessionId::parse(bad, NodeKind::Mongos).is_none(), "{bad}");
        }
    }

    #[test]
    fn id_list_bounds() {
        assert!(matches!(parse_session_ids(&[], NodeKind::Mongod), Err(SessionError::InvalidRequest(_))));
        let many: Vec<String> = (0..=MAX_KILL_IDS).map(|i| i.to_string()).collect();
        assert!(matches!(parse_session_ids(&many, NodeKind::Mongod), Err(SessionError::InvalidRequest(_))));
        assert_eq!(parse_session_ids(&many[..MAX_KILL_IDS], NodeKind::Mongod).unwrap().len(), MAX_KILL_IDS);
        // 1000 copies of one id collapse to one.
        let dup = vec!["5".to_owned(); MAX_KILL_IDS];
        assert_eq!(parse_session_ids(&dup, NodeKind::Mongod).unwrap().len(), 1);
    }
}
