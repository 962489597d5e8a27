//! The server half of SCRAM-SHA-1/256 comes from `docplane-scram`, which the driver's legacy
//! client shares for the client half: one key schedule for both ends.

pub use docplane_scram::{
    ClientFirstMessage, Mechanism, ScramCredential, ScramError, ServerConversation as Conversation,
    new_credential, parse_client_first,
};
