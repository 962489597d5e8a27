//! `GET /v3/{project_id}/instances/{instance_id}/conn-statistics?node_id=` (the vendor's
//! ShowConnectionStatistics, action `dds:instance:getConnectionStatistics`): an instance's
//! client connections per client IP, inner (docplane's own and the cluster members') and outer
//! (everyone else's), from one `$currentOp` with idle connections per node
//! (`docplane_sessions::conns`). Without `node_id` every node of the instance that answers is
//! counted (the vendor: "all nodes that can be connected"); a node that does not answer is
//! skipped and logged. With `node_id`, that node of the instance (`DBS.200013` otherwise), and a
//! node that does not answer is `DBS.301076`. Each list holds at most 200 rows, most
//! connections first; the totals count every connection.

use axum::Json;
use axum::extract::State;
use docplane_sessions::conns::ConnectionStats;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::common::{ResolvedNode, check_state_and_version, list_error, present, target_of};
use super::instances::InstancePath;
use crate::error::{ApiError, ErrorBody};
use crate::route::{ApiPath, ApiQuery, Principal};
use crate::state::AppState;

/// The query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnStatsQuery {
    /// One node of the instance; absent: every node.
    pub node_id: Option<String>,
}

/// Connections from one client IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientConnections {
    pub client_ip: String,
    pub count: u64,
}

/// The answer (the vendor's `ShowConnectionStatisticsResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConnStatsResponse {
    pub total_connections: u64,
    pub total_inner_connections: u64,
    pub total_outer_connections: u64,
    /// At most 200 rows, most connections first.
    pub inner_connections: Vec<ClientConnections>,
    /// At most 200 rows, most connections first.
    pub outer_connections: Vec<ClientConnections>,
}

impl From<&ConnectionStats> for ConnStatsResponse {
    fn from(s: &ConnectionStats) -> Self {
        let rows = |m| {
            ConnectionStats::rows(m)
                .into_iter()
                .map(|(client_ip, count)| ClientConnections { client_ip, count })
                .collect()
        };
        let (inner, outer) = (s.total_inner(), s.total_outer());
        ConnStatsResponse {
            total_connections: inner + outer,
            total_inner_connections: inner,
            total_outer_connections: outer,
            inner_connections: rows(&s.inner),
            outer_connections: rows(&s.outer),
        }
    }
}

/// Connection statistics of an instance or one of its nodes.
#[utoipa::path(get, path = "/v3/{project_id}/instances/{instance_id}/conn-statistics", tag = "dds",
    params(("project_id" = String, Path), ("instance_id" = String, Path), ConnStatsQuery),
    responses((status = 200, body = ConnStatsResponse),
              (status = 400, body = ErrorBody, description = "DBS.301076 DBS.200041"),
              (status = 403, body = ErrorBody, description = "DBS.200011 DBS.200019"),
              (status = 404, body = ErrorBody, description = "DBS.200002 DBS.200013")))]
pub async fn show_connection_statistics(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(path): ApiPath<InstancePath>,
    ApiQuery(q): ApiQuery<ConnStatsQuery>,
) -> Result<Json<ConnStatsResponse>, ApiError> {
    let instance =
        st.store.get_instance(p.project_id(), &path.instance_id).await?.ok_or(ApiError::InstanceNotFound)?;
    let nodes = st.store.list_nodes(&instance.id).await?;
    let wanted = present(&q.node_id);
    let nodes: Vec<_> = match wanted {
        Some(id) => {
            let n = nodes.into_iter().find(|n| n.id == id).ok_or(ApiError::NodeNotFound)?;
            vec![n]
        }
        None => nodes,
    };
    let mut stats = ConnectionStats::default();
    for node in nodes {
        let target = target_of(&st, &node).await?;
        let resolved = ResolvedNode { node, instance: instance.clone(), target };
        let read = match check_state_and_version(&resolved) {
            Ok(()) => st.sessions.connection_stats(&resolved.target).await.map_err(list_error),
            Err(e) => Err(e),
        };
        match read {
            Ok(s) => stats.merge(s),
            Err(e) if wanted.is_some() => return Err(e),
            Err(e) => {
                tracing::warn!(node_id = %resolved.node.id, error = %e, "connection statistics: node skipped")
            }
        }
    }
    Ok(Json(ConnStatsResponse::from(&stats)))
}
