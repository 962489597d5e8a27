//! The pure modules of docplane-iam that the fuzz targets drive, compiled from docplane-iam's own
//! source files. Depending on docplane-iam itself would pull in the metadata store (sqlx, tokio) and
//! make the instrumented build take minutes instead of seconds; these three modules depend on nothing
//! else of the crate, so the code fuzzed here is exactly the code docplane runs.

#[path = "../../src/policy.rs"]
pub mod policy;
#[path = "../../src/sign.rs"]
pub mod sign;
#[path = "../../src/token.rs"]
pub mod token;
