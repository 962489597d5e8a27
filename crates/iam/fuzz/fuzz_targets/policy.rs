//! Fuzz target: any text as a policy document through `policy::parse_policy_text`, and every parsed
//! statement evaluated against a few actions (the wildcard matcher must stay fast on any pattern:
//! a slow input shows up as a libFuzzer timeout).
//! Run with `scripts/reliability/fuzz` or `cargo fuzz run policy` from `crates/iam`.
#![no_main]

use docplane_iam_fuzz::policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(statements) = policy::parse_policy_text(text) {
        for action in ["dds:instance:listSession", "dds:instance:deleteSession", "iam:users:createUser", "a"]
        {
            let _ = policy::evaluate(statements.iter(), action);
        }
    }
    // The matcher alone, on a pattern and a text split from the input.
    if let Some((pattern, subject)) = text.split_once('\0') {
        let _ = policy::wildcard_match(pattern, subject);
    }
});
