//! docplane-driver: the node driver. One job: talk to MongoDB-compatible nodes (MongoDB 3.4+,
//! the embedded node) through the official `mongodb` driver on behalf of the control plane.
//!
//! - [`pool`]: one direct-connection pool per node id, rebuilt on address/credential change,
//!   every command bounded by [`DriverConfig::operation_timeout`];
//! - [`info`]: `buildInfo` / `hello`, versions and roles;
//! - [`discover`]: from a seed address to a [`Topology`] for registration;
//! - [`ops`]: `$currentOp` / `currentOp` read into neutral [`SessionRecord`]s, `killOp`;
//! - [`sessions`]: the list (filters, order, paging) and kill (validate, check, kill, verify)
//!   service;
//! - [`health`]: probes and a periodic refresh loop.
//!
//! Architecture invariant: this crate knows nothing of HTTP, JSON request shapes or vendor error
//! codes; its errors are [`DriverError`] and its records are plain structs.
//!
//! Old servers: the official driver 3.x speaks only to servers with wire version >= 9
//! (MongoDB 4.4+). A node below that (MongoDB 3.4 to 4.2, learned from an `isMaster` handshake
//! read once per node and connection identity) is reached through docplane's own small client in
//! the private `legacy` module instead: `OP_QUERY` commands before wire version 6, `OP_MSG` from
//! 3.6, SCRAM-SHA-1 (SCRAM-SHA-256 when the server lists it), the `currentOp` command on 3.4 and
//! `$currentOp` from 3.6, `killOp`, `replSetGetConfig`. `server_info`, `discover`, `list_ops`,
//! `ops_matching`, `kill_op` and the [`sessions`] service use it transparently, under the same
//! [`DriverConfig`] timeouts; [`DriverConfig::force_legacy_wire`] forces it for every node.
//!

pub mod config;
pub mod discover;
pub mod error;
pub mod health;
pub mod info;
mod legacy;
pub mod ops;
pub mod pool;
pub mod sessions;

pub use config::{ConnectionKey, Credentials, DEFAULT_APP_NAME, DriverConfig, NodeKind, NodeTarget};
pub use discover::{DeploymentMode, DiscoverRequest, DiscoveredNode, Topology};
pub use error::{DriverError, Result};
pub use health::{HealthLoop, HealthStore, NodeHealth, NodeStatus, refresh_once, spawn_health_loop};
pub use info::{HelloInfo, NodeRole, ServerInfo, ServerVersion};
pub use ops::SessionRecord;
pub use pool::Driver;
pub use sessions::{
    KillOutcome, KillReport, KillStatus, SessionFilter, SessionId, SessionPage, SessionQuery,
};
