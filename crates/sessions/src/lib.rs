//! docplane-sessions: the session service. The vendor's "sessions" are a node's current
//! operations; this crate lists, selects and kills them, verifies kills, records them in the
//! audit chain and applies the safety rails and the privacy setting, for every caller (the DDS
//! API, the CLI through it, and the rule enforcer). It talks to nodes only through
//! `docplane_driver`'s transport and knows nothing of HTTP.

pub mod privacy;
pub mod rails;
