//! docplane's embedded MongoDB-wire-compatible node.
//!
//! Bird's-eye view: [`server`] accepts TCP connections and runs one [`conn`] loop per connection; the loop
//! decodes frames with `docplane-wire`, hands each command document to [`cmd::dispatch`], and writes the
//! reply. Every command runs as an operation registered in [`ops::OpRegistry`] (what `currentOp` reports
//! and `killOp` kills); data work runs on `spawn_blocking` threads against `docplane-engine` with an
//! [`ops::OpInterrupt`] bound to the operation. [`auth`] holds SCRAM, users and built-in roles;
//! [`sessions`] the logical sessions seen through `lsid`; [`cursors`] materialized cursor batches.
//!
//! Architecture invariant: nothing in this crate blocks the async runtime on storage work, and no input
//! (bytes or command documents) can panic the process: errors become `{ok: 0, errmsg, code, codeName}`
//! replies or close only the offending connection.

pub mod auth;
pub mod cmd;
pub mod config;
pub mod conn;
pub mod cursors;
pub mod failpoint;
pub mod ops;
pub mod readconcern;
pub mod redact;
pub mod reply;
pub mod rules;
pub mod server;
pub mod sessions;
pub mod state;
pub mod ttl;
pub mod writeconcern;

pub use config::{NodeConfig, NodeError};
pub use redact::redact_command;
pub use server::{Node, NodeHandle};

/// The MongoDB server version we report in `buildInfo` and `serverStatus`.
pub const MONGODB_COMPAT_VERSION: &str = "7.0.0";
/// docplane's own version, reported as `buildInfo.docplane.version`.
pub const DOCPLANE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// `maxWireVersion` we advertise (MongoDB 7.0).
pub const MAX_WIRE_VERSION: i32 = 21;
