//! docplane-driver: the transport to MongoDB-compatible nodes (MongoDB 3.4+, the embedded node).
//! One job: run commands on nodes on behalf of the control plane, bounded in time, whatever the
//! node's wire version. What the results mean (the vendor's sessions) is `docplane-sessions`'.
//!
//! - [`transport`]: the [`NodeTransport`] trait, implemented by the official driver's
//!   [`pool::OfficialPool`] (MongoDB 4.4+) and the private `legacy` client (3.4 to 4.2), and
//!   [`Driver`], the handle that routes each node to one of them;
//! - [`ops`]: the current-op read (`$currentOp` / `currentOp`, docplane's own entries removed,
//!   stages pushed down to the node) and `killOp`, over any transport;
//! - [`info`]: `buildInfo` / `hello`, versions and roles;
//! - [`discover`]: from a seed address to a [`Topology`] for registration;
//! - [`health`]: probes and a periodic refresh loop.
//!
//! Architecture invariant: this crate knows nothing of HTTP, JSON request shapes, vendor error
//! codes or the vendor's session vocabulary; its errors are [`DriverError`] and its results are
//! BSON documents and plain structs.
//!
//! Old servers: the official driver 3.x speaks only to servers with wire version >= 9
//! (MongoDB 4.4+). A node below that (MongoDB 3.4 to 4.2, learned from an `isMaster` handshake
//! read once per node and connection identity) is routed to docplane's own small client in the
//! private `legacy` module instead: `OP_QUERY` commands before wire version 6, `OP_MSG` from
//! 3.6, SCRAM-SHA-1 (SCRAM-SHA-256 when the server lists it), cursors followed with `getMore`.
//! [`DriverConfig::force_legacy_wire`] routes every node there.

pub mod config;
pub mod discover;
pub mod error;
pub mod health;
pub mod info;
pub mod legacy;
pub mod ops;
pub mod pool;
pub mod transport;

pub use config::{ConnectionKey, Credentials, DEFAULT_APP_NAME, DriverConfig, NodeKind, NodeTarget};
pub use discover::{DeploymentMode, DiscoverRequest, DiscoveredNode, Topology};
pub use error::{DriverError, Result};
pub use health::{HealthLoop, HealthStore, NodeHealth, NodeStatus, refresh_once, spawn_health_loop};
pub use info::{HelloInfo, NodeRole, ServerInfo, ServerVersion};
pub use pool::PoolStats;
pub use transport::{Driver, NodeTransport};
