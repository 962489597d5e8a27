//! Property test of the command path without a socket: random command documents (and random
//! corruptions of their bytes) go through `cmd::dispatch_bytes`, the fuzz target's entry point
//! (`crates/node/fuzz`), against fresh in-memory node states with access control off and on.
//! Every reply must be `ok: 1` or a complete error; nothing may panic.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bson::{Bson, Document, doc};
use docplane_node::NodeConfig;
use docplane_node::cmd::dispatch_bytes;
use docplane_node::conn::{ConnCtx, ConnInfo};
use docplane_node::state::NodeState;
use proptest::prelude::*;

/// A random command, with or without `$db`.
fn arb_command() -> impl Strategy<Value = Document> {
    (common::arb::arb_command(common::arb::command_names()), any::<bool>()).prop_map(|(mut d, with_db)| {
        if with_db {
            d.insert("$db", "fuzz");
        }
        d
    })
}

/// Bytes of a command, possibly with a few bytes overwritten.
fn arb_input() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (any::<u8>(), arb_command(), prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3))
        .prop_map(|(mode, cmd, flips)| {
            let mut bytes = bson::to_vec(&cmd).unwrap();
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            (mode, bytes)
        })
}

fn well_formed(reply: &Document) -> bool {
    match reply.get("ok") {
        Some(Bson::Double(ok)) if *ok == 1.0 => true,
        Some(Bson::Double(ok)) if *ok == 0.0 => {
            reply.get_i32("code").is_ok()
                && reply.get_str("codeName").is_ok()
                && reply.get_str("errmsg").is_ok()
        }
        _ => false,
    }
}

#[test]
fn random_command_bytes_get_well_formed_replies_in_process() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig { cases: 400, ..ProptestConfig::default() });
    let dispatched = std::cell::Cell::new(0u32);
    runner
        .run(&arb_input(), |(mode, bytes)| {
            let state = NodeState::in_memory(NodeConfig { auth: mode & 1 == 1, ..NodeConfig::default() });
            let legacy_db = (mode & 2 == 2).then(|| "fuzz".to_owned());
            let replies = rt.block_on(async {
                let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
                let mut conn = ConnCtx::new(Arc::new(ConnInfo::new(1, peer)));
                let mut out = Vec::new();
                for _ in 0..2 {
                    match dispatch_bytes(&state, &mut conn, &bytes, legacy_db.clone()).await {
                        Some(r) => out.push(r),
                        None => break,
                    }
                }
                out
            });
            dispatched.set(dispatched.get() + replies.len() as u32);
            for r in &replies {
                prop_assert!(well_formed(r), "{r}");
            }
            Ok(())
        })
        .unwrap();
    // Most inputs are intact documents: the path under test was actually reached.
    let dispatched = dispatched.get();
    assert!(dispatched > 300, "only {dispatched} commands were dispatched");
}

#[test]
fn dispatch_bytes_runs_commands_and_rejects_bad_bytes() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let state = NodeState::in_memory(NodeConfig { auth: false, ..NodeConfig::default() });
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
    let mut conn = ConnCtx::new(Arc::new(ConnInfo::new(1, peer)));
    rt.block_on(async {
        let insert = bson::to_vec(&doc! {"insert": "c", "documents": [{"_id": 1}], "$db": "t"}).unwrap();
        let r = dispatch_bytes(&state, &mut conn, &insert, None).await.unwrap();
        assert_eq!(r.get_i32("n").unwrap(), 1, "{r}");
        let count = bson::to_vec(&doc! {"count": "c"}).unwrap();
        let r = dispatch_bytes(&state, &mut conn, &count, Some("t".into())).await.unwrap();
        assert_eq!(r.get_i32("n").unwrap(), 1, "{r}");
        // truncated or trailing bytes are not a document
        assert!(dispatch_bytes(&state, &mut conn, &insert[..insert.len() - 1], None).await.is_none());
        let mut longer = insert.clone();
        longer.push(0);
        assert!(dispatch_bytes(&state, &mut conn, &longer, None).await.is_none());
    });
}
