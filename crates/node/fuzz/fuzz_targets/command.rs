//! Fuzz target: arbitrary bytes as one BSON command document through the node's command path
//! (wire-style document decoding, authorization, op registration, the handler, the reply) against
//! a fresh in-memory node state, with no socket.
//!
//! The first byte picks the variant: bit 0 turns access control on, bit 1 passes a legacy
//! (OP_QUERY) database instead of relying on `$db`. Each input is dispatched twice on one
//! connection so that stateful paths (cursors, SASL conversations, sessions) are reached.
//! Every reply must be `ok: 1` or a complete error (`code`, `codeName`, `errmsg`); a panic or
//! a stack overflow is a finding.
//!
//! Run with `cargo fuzz run command` from `crates/node` (needs cargo-fuzz and a nightly toolchain).
#![no_main]

use std::sync::{Arc, LazyLock};

use bson::{Bson, Document};
use docplane_node::NodeConfig;
use docplane_node::cmd::dispatch_bytes;
use docplane_node::conn::{ConnCtx, ConnInfo};
use docplane_node::state::NodeState;
use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime")
});

fn assert_well_formed(reply: &Document) {
    match reply.get("ok") {
        Some(Bson::Double(ok)) if *ok == 1.0 => {}
        Some(Bson::Double(ok)) if *ok == 0.0 => {
            assert!(reply.get_i32("code").is_ok(), "error without code: {reply}");
            assert!(reply.get_str("codeName").is_ok(), "error without codeName: {reply}");
            assert!(reply.get_str("errmsg").is_ok(), "error without errmsg: {reply}");
        }
        other => panic!("reply with ok = {other:?}: {reply}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else { return };
    let config = NodeConfig { auth: mode & 1 == 1, ..NodeConfig::default() };
    let state = NodeState::in_memory(config);
    let legacy_db = (mode & 2 == 2).then(|| "fuzz".to_owned());
    RUNTIME.block_on(async {
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
        let mut conn = ConnCtx::new(Arc::new(ConnInfo::new(1, peer)));
        for _ in 0..2 {
            match dispatch_bytes(&state, &mut conn, bytes, legacy_db.clone()).await {
                Some(reply) => assert_well_formed(&reply),
                None => return,
            }
        }
    });
});
