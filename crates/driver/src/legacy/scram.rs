//! The client half of SCRAM-SHA-1/256 comes from `docplane-scram`, which the embedded node shares
//! for the server half: one key schedule for both ends.

pub use docplane_scram::{ClientFinal, ClientFirst, MIN_ITERATIONS, Mechanism, ScramError, new_nonce};
