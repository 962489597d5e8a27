//! Fuzz target: every JSON request body type of the API routes, deserialized from arbitrary bytes and
//! then validated the way its handler does.
//!
//! The first byte picks the body (in the order of the `match` below; one arm per `requestBody` of
//! docs/openapi.json), the rest is the body. Nothing may panic, and a body that deserializes must
//! survive validation without panicking; the kill body's validator accepts only 1..=1,000 ids (the
//! same ones the schema type reads) and refuses everything else with `DBS.200001`; the session
//! settings' validator answers only what its schema type reads (names collapsed and bounded) or
//! one of its three codes.
//! Run with `scripts/reliability/fuzz` or `cargo fuzz run bodies` from `crates/api`.
#![no_main]

use docplane_api::dds::instances::{RegisterInstanceBody, parse_register};
use docplane_api::dds::sessions::{KillSessionsBody, parse_kill_body};
use docplane_api::dds::settings::{MAX_NAMES, SessionSettingsBody, parse_settings_body};
use docplane_api::iam_routes::{CredentialRequest, GroupRequest, RoleRequest, TokenRequest, UserRequest};
use libfuzzer_sys::fuzz_target;

fn de<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    match which % 9 {
        0 => {
            // POST /v3/{project_id}/nodes/{node_id}/session (the handler reads the raw body).
            let parsed = parse_kill_body(body);
            match &parsed {
                Ok(ids) => {
                    assert!(!ids.is_empty() && ids.len() <= 1000);
                    // Where the schema type reads the body too, both read the same ids.
                    if let Some(t) = de::<KillSessionsBody>(body) {
                        assert_eq!(ids, &t.sessions);
                    }
                }
                Err(e) => assert_eq!(e.code_and_status().0, "DBS.200001"),
            }
        }
        1 => {
            // POST /v3/{project_id}/instances/register
            if let Some(b) = de::<RegisterInstanceBody>(body) {
                let _ = parse_register(&b);
            }
        }
        2 => {
            let _ = de::<TokenRequest>(body);
        }
        3 => {
            let _ = de::<UserRequest>(body);
        }
        4 => {
            let _ = de::<GroupRequest>(body);
        }
        5 => {
            // POST /v3.0/OS-ROLE/roles: the policy inside goes through the IAM parser.
            if let Some(r) = de::<RoleRequest>(body) {
                let _ = docplane_iam::policy::parse_policy(&r.role.policy);
            }
        }
        6 => {
            let _ = de::<CredentialRequest>(body);
        }
        8 => {
            // PUT /v3/{project_id}/instances/{instance_id}/session-settings (raw body).
            match parse_settings_body(body) {
                Ok(b) => {
                    for names in [&b.protected_users, &b.protected_app_names] {
                        assert!(names.len() <= MAX_NAMES);
                        assert!(names.iter().all(|n| !n.is_empty() && n.trim() == n));
                    }
                    let t = de::<SessionSettingsBody>(body).expect("an accepted body has the schema's shape");
                    assert_eq!(t.redact_operations, b.redact_operations);
                }
                Err(e) => assert!(["DBS.200001", "DBS.900030", "DBS.900031"].contains(&e.code_and_status().0)),
            }
        }
        _ => {
            // Any body as the error shape clients decode.
            let _ = de::<docplane_api::ErrorBody>(body);
        }
    }
});
