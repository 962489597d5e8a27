//! [`Iam::login`]: password login with bounded cost.
//!
//! Two bounds protect the process from login storms (anyone can send `POST /v3/auth/tokens`):
//! - every argon2 computation runs on the [`PasswordPool`] (a fixed set of worker threads with a
//!   bounded, short queue), so memory and CPU do not grow with the number of concurrent attempts;
//! - failed attempts are throttled by [`LoginThrottle`] per (user, source address), per source
//!   address and per user, with growing delays; a throttled attempt is refused before any lookup
//!   or hash, so it costs next to nothing.
//!
//! Both refusals are [`IamError::TooManyAttempts`] (HTTP 429 with `Retry-After`). Neither depends
//! on whether the user exists: the throttle keys on what the request names, and an unknown user is
//! verified against a dummy hash like any other, so refusals and 401s tell nothing about accounts.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::pool::{PasswordPool, PoolConfig};
use crate::service::{Iam, IamError, IssuedToken, Result, ScopeSelector, UserSelector};
use crate::throttle::{Account, LoginThrottle, Source, ThrottleConfig};

/// The bounds of password work: the worker pool and the failed-login throttle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginLimits {
    pub pool: PoolConfig,
    pub throttle: ThrottleConfig,
}

impl LoginLimits {
    /// Refuses parameters that cannot work, naming the parameter.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.throttle.validate()
    }
}

/// The running bounds, held by [`Iam`].
#[derive(Debug)]
pub(crate) struct LoginGuard {
    pub(crate) pool: PasswordPool,
    pub(crate) throttle: LoginThrottle,
}

impl LoginGuard {
    pub(crate) fn new(limits: LoginLimits) -> Result<Self> {
        limits.validate().map_err(IamError::BadRequest)?;
        let pool = PasswordPool::new(limits.pool)
            .map_err(|e| IamError::Internal(format!("starting the password workers: {e}")))?;
        Ok(Self { pool, throttle: LoginThrottle::new(limits.throttle) })
    }

    /// Runs a password hash or verification on the pool.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.pool.run(f).await.map_err(|b| IamError::TooManyAttempts { retry_after: b.retry_after })
    }
}

/// The throttle key of the user a request names (names compared case-insensitively, so that case
/// variations of one name share its allowance).
fn account_key(who: &UserSelector) -> Account {
    match who {
        UserSelector::Id(id) => Account::new(&["id", id]),
        UserSelector::Name { domain_name, domain_id, name } => Account::new(&[
            "name",
            domain_id.as_deref().unwrap_or(""),
            &domain_name.as_deref().unwrap_or("").to_lowercase(),
            &name.to_lowercase(),
        ]),
    }
}

impl Iam {
    /// Password login from `source` (the client's address; `None` when unknown, all such attempts
    /// then share one address key): [`Iam::issue_scoped_token`] behind the throttle (see the module docs).
    pub async fn login(
        &self,
        who: &UserSelector,
        password: &str,
        scope: &ScopeSelector,
        now: DateTime<Utc>,
        source: Option<IpAddr>,
    ) -> Result<IssuedToken> {
        let throttle = &self.login.throttle;
        let attempt = throttle
            .begin(account_key(who), Source::new(source), Instant::now())
            .map_err(|wait| IamError::TooManyAttempts { retry_after: wait.max(Duration::from_millis(1)) })?;
        match self.issue_scoped_token(who, password, scope, now).await {
            Ok(t) => {
                throttle.succeeded(attempt);
                Ok(t)
            }
            // Also a right password with a disabled user or a wrong project: counting only the
            // wrong passwords would tell the caller which passwords are right.
            Err(e @ IamError::InvalidCredentials) => {
                throttle.failed(attempt);
                Err(e)
            }
            // No verdict on the password (no worker free, store error).
            Err(e) => {
                throttle.abandoned(attempt);
                Err(e)
            }
        }
    }

    /// The password worker pool (its counters show the bound at work).
    pub fn password_pool(&self) -> &PasswordPool {
        &self.login.pool
    }

    /// The failed-login throttle.
    pub fn login_throttle(&self) -> &LoginThrottle {
        &self.login.throttle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_keys_ignore_case_but_not_the_account() {
        let by = |d: &str, n: &str| UserSelector::Name {
            domain_name: Some(d.into()),
            domain_id: None,
            name: n.into(),
        };
        assert_eq!(account_key(&by("Acct", "Admin")), account_key(&by("acct", "admin")));
        assert_ne!(account_key(&by("acct", "admin")), account_key(&by("other", "admin")));
        assert_ne!(account_key(&UserSelector::Id("admin".into())), account_key(&by("", "admin")));
    }
}
