//! docplane-loadtest: the programs behind RELIABILITY.md's load and fault scenarios.
//!
//! - `docplane-load` (src/bin): a bounded mixed load (token and AK/SK auth, list sessions, kill
//!   sessions) from a second process, with latency percentiles, status counts, a per-second timeline
//!   and the resident memory of the server processes over time.
//! - `docplane-faultproxy` (src/bin): a TCP proxy between docplane and a node (or PostgreSQL) that
//!   can pass, delay, stall, drop or cut the traffic on command.
//!
//! The library holds their testable parts: [`target`] (loopback-only addresses), [`stats`]
//! (latency histograms and outcome counts), [`mix`] (the weighted operation mix), [`creds`] (the
//! credentials file), [`proxy`] (the proxy core) and [`rss`] (memory sampling from `/proc`).
//!
//! Both programs refuse any non-loopback address and stop by themselves (a duration or request bound
//! for the load, a lifetime bound for the proxy), so a forgotten run cannot load anything but this
//! machine, or run forever.

pub mod creds;
pub mod mix;
pub mod proxy;
pub mod rss;
pub mod stats;
pub mod target;
