//! docplane-iam: identity and access, with no HTTP types.
//!
//! - [`password`]: argon2id hashing (working memory returned to the OS after each hash).
//! - [`pool`]: the bounded worker pool every hash runs on; [`throttle`]: growing delays after failed
//!   logins; [`login`]: [`Iam::login`], which puts both around password login.
//! - [`keys`]: the master key (file with mode 0600 or `DOCPLANE_MASTER_KEY`), AES-256-GCM sealing of
//!   secrets at rest, derived subkeys.
//! - [`token`]: HMAC-signed tokens verified without a database round trip.
//! - [`sign`]: `SDK-HMAC-SHA256` request signatures exactly as the vendor SDKs produce them; pure
//!   functions.
//! - [`policy`]: policy documents and deny-overrides evaluation.
//! - [`service`]: [`Iam`], which ties these to the metadata store, with caches kept correct across
//!   replicas by polling the store's change log.
//!
//! Architecture invariant: this crate knows nothing about HTTP or the vendor's JSON shapes; the API
//! crate maps [`IamError`] to vendor error codes.

pub mod keys;
pub mod login;
pub mod password;
pub mod policy;
pub mod pool;
pub mod service;
pub mod sign;
pub mod throttle;
pub mod token;

pub use keys::{MasterKey, Sealer};
pub use login::LoginLimits;
pub use pool::{PasswordPool, PoolBusy, PoolConfig, PoolStats};
pub use service::{
    ADMIN_GROUP, AuthMethod, BootstrapOptions, BootstrapOutput, DomainSelector, Iam, IamError, IssuedToken,
    KEY_CHECK_SETTING, Principal, ProjectSelector, ScopeSelector, UserPatch, UserSelector, new_id,
};
pub use sign::{SignError, SignedRequest};
pub use throttle::{Limit, LoginThrottle, ThrottleConfig};
