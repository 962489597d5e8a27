//! The weighted operation mix, e.g. `list-token=4,list-aksk=4,kill-token=1,kill-aksk=1`.

use std::fmt;
use std::str::FromStr;

/// One kind of request the load generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `GET /v3/{project}/nodes/{node}/sessions` with `X-Auth-Token`.
    ListToken,
    /// The same, signed with AK/SK (`SDK-HMAC-SHA256`).
    ListAksk,
    /// List (token) then `POST .../session` killing one of the load's own `sleep` operations.
    KillToken,
    /// The same, signed with AK/SK.
    KillAksk,
    /// `POST /v3/auth/tokens` (a password login: argon2id on the server).
    Login,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::ListToken, Op::ListAksk, Op::KillToken, Op::KillAksk, Op::Login];

    pub fn name(self) -> &'static str {
        match self {
            Op::ListToken => "list-token",
            Op::ListAksk => "list-aksk",
            Op::KillToken => "kill-token",
            Op::KillAksk => "kill-aksk",
            Op::Login => "login",
        }
    }

    pub fn is_kill(self) -> bool {
        matches!(self, Op::KillToken | Op::KillAksk)
    }

    pub fn signed(self) -> bool {
        matches!(self, Op::ListAksk | Op::KillAksk)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A mix the parser refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    #[error("unknown operation {0:?} (known: list-token, list-aksk, kill-token, kill-aksk, login)")]
    UnknownOp(String),
    #[error("{0:?}: expected op=weight with an integer weight 0..=1000")]
    BadWeight(String),
    #[error("operation {0} given twice")]
    Repeated(&'static str),
    #[error("every weight is zero")]
    Empty,
}

/// Operations with integer weights; [`Mix::pick`] maps a number in `0..total` to an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Op, u32)>,
    total: u32,
}

impl Mix {
    pub fn total(&self) -> u32 {
        self.total
    }

    /// The operations with a non-zero weight.
    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        self.weights.iter().filter(|(_, w)| *w > 0).map(|(op, _)| *op)
    }

    pub fn weight(&self, op: Op) -> u32 {
        self.weights.iter().find(|(o, _)| *o == op).map_or(0, |(_, w)| *w)
    }

    /// The operation for `r` in `0..total()` (larger values wrap).
    pub fn pick(&self, r: u32) -> Op {
        let mut r = r % self.total.max(1);
        for (op, w) in &self.weights {
            if r < *w {
                return *op;
            }
            r -= w;
        }
        // Unreachable while total > 0 (the parser refuses an all-zero mix).
        Op::ListToken
    }
}

impl FromStr for Mix {
    type Err = MixError;

    fn from_str(s: &str) -> Result<Self, MixError> {
        let mut weights: Vec<(Op, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part.split_once('=').ok_or_else(|| MixError::BadWeight(part.to_owned()))?;
            let op = Op::ALL
                .into_iter()
                .find(|o| o.name() == name.trim())
                .ok_or_else(|| MixError::UnknownOp(name.trim().to_owned()))?;
            let w: u32 = w
                .trim()
                .parse()
                .ok()
                .filter(|w| *w <= 1000)
                .ok_or_else(|| MixError::BadWeight(part.to_owned()))?;
            if weights.iter().any(|(o, _)| *o == op) {
                return Err(MixError::Repeated(op.name()));
            }
            weights.push((op, w));
        }
        let total = weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Err(MixError::Empty);
        }
        Ok(Mix { weights, total })
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests: a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn parse_and_pick() {
        let m: Mix = "list-token=3, kill-aksk=1,login=0".parse().unwrap();
        assert_eq!(m.total(), 4);
        assert_eq!(m.ops().collect::<Vec<_>>(), [Op::ListToken, Op::KillAksk]);
        let picks: Vec<Op> = (0..8).map(|r| m.pick(r)).collect();
        assert_eq!(picks.iter().filter(|o| **o == Op::ListToken).count(), 6);
        assert_eq!(picks.iter().filter(|o| **o == Op::KillAksk).count(), 2);
        assert!(!picks.contains(&Op::Login));
        assert_eq!(m.weight(Op::Login), 0);
        assert_eq!("x=1".parse::<Mix>(), Err(MixError::UnknownOp("x".into())));
        assert!(matches!("login".parse::<Mix>(), Err(MixError::BadWeight(_))));
        assert!(matches!("login=-1".parse::<Mix>(), Err(MixError::BadWeight(_))));
        assert!(matches!("login=1001".parse::<Mix>(), Err(MixError::BadWeight(_))));
        assert_eq!("login=1,login=2".parse::<Mix>(), Err(MixError::Repeated("login")));
        assert_eq!("login=0".parse::<Mix>(), Err(MixError::Empty));
        assert_eq!("".parse::<Mix>(), Err(MixError::Empty));
    }
}
