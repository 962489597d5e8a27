//! Shared plumbing of the DDS routes: vendor ids, the driver handle, node resolution inside the
//! caller's project, sealed node credentials, and the mapping of driver errors to vendor codes.
//!
//! Invariants:
//! - a node is only ever looked up inside the caller's project (`store.get_node(project, id)`), so
//!   another project's node is a plain `DBS.200013` 404;
//! - node credentials exist in clear only in memory, between [`open_credentials`] and the driver;
//!   at rest they are AES-GCM sealed by the iam crate with the node id as associated data.

use docplane_driver::{Credentials, DriverError, NodeKind, NodeTarget, ServerVersion};
use docplane_sessions::SessionError;
use docplane_store::{GroupType, Instance, Node, NodeContext, SessionSettings};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, NodeCause};
use crate::state::AppState;

/// Vendor id suffixes.
pub const INSTANCE_SUFFIX: &str = "in02";
/// Node id suffix.
pub const NODE_SUFFIX: &str = "no02";
/// Group id suffix.
pub const GROUP_SUFFIX: &str = "gr02";

/// A fresh vendor-format id: 32 lowercase hex digits and the suffix.
/// A query parameter with its surrounding blanks removed; an empty one counts as absent (the
/// vendor SDKs send absent filters as empty strings).
pub fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The `offset` of a paged listing: an integer >= 0 (`DBS.280440`), 0 when absent.
pub fn offset_param(v: &Option<String>) -> Result<i64, ApiError> {
    match present(v) {
        None => Ok(0),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::InvalidOffset(format!("offset must be an integer >= 0, got {s:?}"))),
    }
}

/// The `limit` of a paged listing: an integer in `[1, max]` (`DBS.280439`), `default` when absent.
pub fn limit_param(v: &Option<String>, default: i64, max: i64) -> Result<i64, ApiError> {
    match present(v) {
        None => Ok(default),
        Some(s) => s.parse::<i64>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
            ApiError::InvalidLimit(format!("limit must be an integer in [1, {max}], got {s:?}"))
        }),
    }
}

pub fn new_id(suffix: &str) -> String {
    format!("{}{suffix}", uuid::Uuid::new_v4().simple())
}

/// Whether `id` is 32 lowercase hex digits followed by `suffix`.
pub fn is_vendor_id(id: &str, suffix: &str) -> bool {
    id.len() == 32 + suffix.len()
        && id.ends_with(suffix)
        && id[..32].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[derive(Serialize, Deserialize)]
struct SealedCredentials {
    username: String,
    password: String,
    #[serde(default)]
    source: Option<String>,
}

/// Seals credentials for storage in `nodes.credentials_enc` of node `node_id`.
pub fn seal_credentials(st: &AppState, node_id: &str, c: &Credentials) -> Result<Vec<u8>, ApiError> {
    let plain = serde_json::to_vec(&SealedCredentials {
        username: c.username.clone(),
        password: c.password.clone(),
        source: c.source.clone(),
    })
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(st.iam.seal(&plain, node_id.as_bytes()))
}

/// Opens what [`seal_credentials`] sealed for `node_id`.
pub fn open_credentials(st: &AppState, node_id: &str, sealed: &[u8]) -> Result<Credentials, ApiError> {
    let plain = st.iam.open_sealed(sealed, node_id.as_bytes())?;
    let c: SealedCredentials =
        serde_json::from_slice(&plain).map_err(|e| ApiError::Internal(format!("node credentials: {e}")))?;
    Ok(Credentials { username: c.username, password: c.password, source: c.source })
}

/// A node of the caller's project, with its instance and what the driver needs to reach it.
#[derive(Debug, Clone)]
pub struct ResolvedNode {
    /// The stored node.
    pub node: Node,
    /// Its instance.
    pub instance: Instance,
    /// Address, credentials (opened) and kind.
    pub target: NodeTarget,
}

/// The driver target of a stored node. The kind is mongos for nodes whose role is `master`;
/// otherwise it comes from the node's group (one extra query, only for non-primary roles).
pub async fn target_of(st: &AppState, node: &Node) -> Result<NodeTarget, ApiError> {
    let credentials = match &node.credentials_enc {
        Some(blob) => Some(open_credentials(st, &node.id, blob)?),
        None => None,
    };
    let kind = match node.role.as_str() {
        "master" => NodeKind::Mongos,
        "Primary" | "Secondary" | "Hidden" => NodeKind::Mongod,
        _ => {
            let groups = st.store.list_instance_groups(&node.instance_id).await?;
            match groups.iter().find(|g| g.id == node.group_id) {
                Some(g) if g.group_type == GroupType::Mongos => NodeKind::Mongos,
                _ => NodeKind::Mongod,
            }
        }
    };
    Ok(NodeTarget { id: node.id.clone(), address: node.address.clone(), credentials, kind })
}

/// Looks the node up in the caller's project (404 `DBS.200013` otherwise), with its instance and
/// the instance's session settings: one store read, the first of every session call.
pub async fn resolve_node(
    st: &AppState,
    project_id: &str,
    node_id: &str,
) -> Result<(ResolvedNode, SessionSettings), ApiError> {
    let Some(NodeContext { node, instance, settings }) =
        st.store.get_node_context(project_id, node_id).await?
    else {
        return Err(ApiError::NodeNotFound);
    };
    let target = target_of(st, &node).await?;
    Ok((ResolvedNode { node, instance, target }, settings))
}

/// Instance / node states in which session operations are refused (`DBS.200011` for the
/// instance's state, `DBS.200019` for the node's). `normal` and `abnormal` are allowed: an
/// abnormal node is still tried, and fails promptly if it is down.
const FORBIDDING_STATES: &[&str] =
    &["creating", "createfail", "deleting", "deleted", "frozen", "registering"];

/// Checks the instance state (`DBS.200011`), then the node state (`DBS.200019`), then the node's
/// and the instance's recorded version (`DBS.200041`).
pub fn check_state_and_version(r: &ResolvedNode) -> Result<(), ApiError> {
    if FORBIDDING_STATES.contains(&r.instance.status.as_str()) {
        return Err(ApiError::InstanceStateForbids(r.instance.status.clone()));
    }
    if FORBIDDING_STATES.contains(&r.node.status.as_str()) {
        return Err(ApiError::NodeStateForbids(r.node.status.clone()));
    }
    for text in [&r.node.version, &r.instance.datastore_version] {
        if let Some(v) = ServerVersion::parse(text) {
            v.check_supported()
                .map_err(|_| ApiError::InvalidDatastoreVersion(format!("{v} (3.4 or later is required)")))?;
        }
    }
    Ok(())
}

/// What a driver failure becomes on the list route (`DBS.301076` unless more specific).
pub fn list_error(e: SessionError) -> ApiError {
    match e {
        SessionError::Node(DriverError::UnsupportedVersion(m)) => ApiError::InvalidDatastoreVersion(m),
        SessionError::Node(DriverError::InvalidRequest(m)) | SessionError::InvalidRequest(m) => {
            ApiError::BadRequest(m)
        }
        other => ApiError::QuerySessionFailed(node_cause(&other), other.to_string()),
    }
}

/// What a driver failure becomes on the kill route.
pub fn kill_error(e: SessionError) -> ApiError {
    match e {
        SessionError::InvalidSessionIds(ids) => {
            ApiError::InvalidSessionId(format!("Invalid session id: {}", ids.join(", ")))
        }
        SessionError::InactiveSessions(ids) => {
            ApiError::InvalidSessionId(format!("Inactive sessions cannot be terminated: {}", ids.join(", ")))
        }
        SessionError::Node(DriverError::UnsupportedVersion(m)) => ApiError::InvalidDatastoreVersion(m),
        SessionError::Node(DriverError::InvalidRequest(m)) | SessionError::InvalidRequest(m) => {
            ApiError::BadRequest(m)
        }
        SessionError::NotRecorded(m) => ApiError::KillNotRecorded(m),
        SessionError::Protected(list) => ApiError::InvalidSessionId(format!(
            "Protected sessions cannot be killed: {}",
            list.iter().map(|(id, why)| format!("{id}: {why}")).collect::<Vec<_>>().join("; ")
        )),
        SessionError::TooManyMatches { matched, max } => ApiError::TooManyMatches(format!(
            "{matched} sessions match, more than max {max}; nothing was killed"
        )),
        other => ApiError::KillSessionFailed(node_cause(&other), other.to_string()),
    }
}

/// The public category of a node failure.
pub fn node_cause(e: &SessionError) -> NodeCause {
    match e {
        SessionError::Node(DriverError::Unreachable(_)) => NodeCause::Unreachable,
        SessionError::Node(DriverError::Timeout(_)) => NodeCause::Timeout,
        SessionError::Node(DriverError::AuthenticationFailed(_)) => NodeCause::AuthenticationFailed,
        SessionError::Node(DriverError::CommandFailed { code, .. }) => NodeCause::Refused(*code),
        _ => NodeCause::Other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vendor_ids() {
        let id = new_id(NODE_SUFFIX);
        assert!(is_vendor_id(&id, NODE_SUFFIX), "{id}");
        assert!(!is_vendor_id(&id, INSTANCE_SUFFIX));
        assert!(!is_vendor_id("ABCDEF0123456789abcdef0123456789no02", NODE_SUFFIX));
        assert!(!is_vendor_id("abc", NODE_SUFFIX));
        assert_ne!(new_id(GROUP_SUFFIX), new_id(GROUP_SUFFIX));
    }

    fn resolved(instance_status: &str, node_status: &str, version: &str) -> ResolvedNode {
        let instance = Instance {
            id: new_id(INSTANCE_SUFFIX),
            project_id: "p".into(),
            name: "i".into(),
            mode: docplane_store::InstanceMode::Single,
            status: instance_status.into(),
            datastore_version: version.into(),
            port: 27017,
            created_at: 0,
            updated_at: 0,
        };
        let node = Node {
            id: new_id(NODE_SUFFIX),
            instance_id: instance.id.clone(),
            group_id: new_id(GROUP_SUFFIX),
            name: "n".into(),
            role: "Primary".into(),
            status: node_status.into(),
            address: "127.0.0.1:27017".into(),
            credentials_enc: None,
            version: version.into(),
            updated_at: 0,
        };
        let target = NodeTarget {
            id: node.id.clone(),
            address: node.address.clone(),
            credentials: None,
            kind: NodeKind::Mongod,
        };
        ResolvedNode { node, instance, target }
    }

    #[test]
    fn state_refusals_name_the_instance_or_the_node() {
        let code =
            |i: &str, n: &str, v: &str| check_state_and_version(&resolved(i, n, v)).map_err(|e| e.body());
        assert_eq!(code("normal", "normal", "7.0.0"), Ok(()));
        assert_eq!(code("normal", "abnormal", "4.0.3"), Ok(()));
        assert_eq!(code("frozen", "normal", "7.0.0").unwrap_err().error_code, "DBS.200011");
        // Both forbid: the instance is reported first.
        assert_eq!(code("deleting", "frozen", "7.0.0").unwrap_err().error_code, "DBS.200011");
        let e = code("normal", "frozen", "7.0.0").unwrap_err();
        assert_eq!(e.error_code, "DBS.200019");
        assert!(e.error_msg.contains("frozen"), "{}", e.error_msg);
        assert_eq!(code("normal", "registering", "7.0.0").unwrap_err().error_code, "DBS.200019");
        assert_eq!(code("normal", "normal", "3.2.22").unwrap_err().error_code, "DBS.200041");
    }

    #[test]
    fn session_errors_map_to_vendor_codes() {
        let node = |e: DriverError| SessionError::Node(e);
        assert_eq!(
            kill_error(SessionError::InvalidSessionIds(vec!["7".into()])).code_and_status().0,
            "DBS.301071"
        );
        assert_eq!(
            kill_error(SessionError::InactiveSessions(vec!["conn3".into()])).code_and_status().0,
            "DBS.301071"
        );
        assert_eq!(kill_error(node(DriverError::Unreachable("x".into()))).code_and_status().0, "DBS.301077");
        assert_eq!(
            kill_error(node(DriverError::Timeout(std::time::Duration::from_secs(1)))).code_and_status().0,
            "DBS.301077"
        );
        assert_eq!(
            kill_error(node(DriverError::UnsupportedVersion("3.2".into()))).code_and_status().0,
            "DBS.200041"
        );
        assert_eq!(
            kill_error(SessionError::InvalidRequest("empty".into())).code_and_status().0,
            "DBS.200001"
        );
        assert_eq!(kill_error(SessionError::NotRecorded("down".into())).code_and_status().0, "DBS.900503");
        assert_eq!(list_error(node(DriverError::Unreachable("x".into()))).code_and_status().0, "DBS.301076");
        assert_eq!(
            list_error(node(DriverError::Unreachable("10.0.0.5:27017: refused".into()))).public_message(),
            "Query session failed: the node is unreachable.",
            "the cause is said, its detail is not"
        );
        assert_eq!(
            list_error(node(DriverError::CommandFailed { code: 13, message: "unauthorized".into() }))
                .code_and_status()
                .0,
            "DBS.301076"
        );
        let msg =
            kill_error(SessionError::InactiveSessions(vec!["conn3".into(), "lsid:x".into()])).to_string();
        assert!(msg.contains("conn3, lsid:x") && msg.starts_with("Inactive sessions cannot be terminated"));
    }
}
