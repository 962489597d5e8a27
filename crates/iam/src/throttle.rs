//! [`LoginThrottle`]: growing delays after failed logins, per source address and per user.
//!
//! Pure logic: no IO, no threads, and time is an argument (`now: Instant`), so tests drive it with
//! any clock. [`Iam::login`](crate::Iam::login) calls it around each password login.
//!
//! Every login attempt is counted against three keys:
//! - the (user, source address) pair: the real user's own mistakes, and one address guessing one
//!   user's password;
//! - the source address alone: one address spraying many user names;
//! - the user alone, across addresses: many addresses guessing one password. Its delay is capped
//!   low ([`ThrottleConfig::user`]), because anyone can drive it: a storm can slow the real user
//!   logging in from elsewhere by at most that cap.
//!
//! So a storm from one address is stopped by its own two keys, and the real user logging in from
//! another address is not affected (unless the storm also exceeds the per-user allowance).
//!
//! For each key, the first `free_failures` failures cost nothing; after `n >= free_failures`
//! failures the next attempt must wait `base_delay * 2^(n - free_failures)` after the last
//! failure, capped at the key's `max_delay`. A refused attempt is answered at once, computes no
//! hash and is not counted. One failure is forgotten per `forget_after` without failures, and a
//! successful login clears the user's two keys (the address key forgets only this attempt, so a
//! sprayer holding one valid account cannot reset its address by logging in).
//!
//! An attempt is counted as a failure when it *starts* ([`LoginThrottle::begin`]), and taken back
//! when it turns out to succeed ([`LoginThrottle::succeeded`]) or when no password was checked
//! ([`LoginThrottle::abandoned`]). So concurrent attempts are counted too: a burst of 64 parallel
//! guesses from one address gets `free_failures` of them checked, not 64.
//!
//! Memory is bounded: keys are fixed-size (user names are hashed, IPv6 addresses cut to their /64),
//! and the map keeps at most [`ThrottleConfig::max_entries`] of them in two generations: when the
//! current generation is full it becomes the previous one and the oldest generation is dropped,
//! so keys in use survive and keys not seen for a generation are forgotten (least recently used,
//! approximately, at O(1) per attempt).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// The allowance of one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Failures that cost no delay.
    pub free_failures: u32,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
}

/// Parameters of a [`LoginThrottle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Per (user, source address).
    pub user_at_address: Limit,
    /// Per source address, whatever the user.
    pub address: Limit,
    /// Per user, whatever the address; keep its cap small (see the module docs).
    pub user: Limit,
    /// The first delay; each further failure doubles it.
    pub base_delay: Duration,
    /// One failure is forgotten per this much time without failures.
    pub forget_after: Duration,
    /// Keys kept at most (about 100 bytes each).
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            user_at_address: Limit { free_failures: 5, max_delay: Duration::from_secs(60) },
            address: Limit { free_failures: 20, max_delay: Duration::from_secs(60) },
            user: Limit { free_failures: 20, max_delay: Duration::from_secs(5) },
            base_delay: Duration::from_secs(1),
            forget_after: Duration::from_secs(60),
            max_entries: 100_000,
        }
    }
}

impl ThrottleConfig {
    /// Refuses parameters that cannot work (a zero interval, a cap below the first delay, ...).
    pub fn validate(&self) -> Result<(), String> {
        for (name, l) in
            [("user at address", self.user_at_address), ("address", self.address), ("user", self.user)]
        {
            if l.free_failures == 0 {
                return Err(format!("login throttle: free failures per {name} must be at least 1"));
            }
            if l.max_delay < self.base_delay {
                return Err(format!("login throttle: the maximum delay per {name} is below the base delay"));
            }
        }
        if self.base_delay.is_zero() || self.forget_after.is_zero() {
            return Err("login throttle: the base delay and the forget interval must be positive".into());
        }
        if self.max_entries < 2 {
            return Err("login throttle: max entries must be at least 2".into());
        }
        Ok(())
    }
}

/// Where an attempt comes from: an IPv4 address, an IPv6 /64 (one host usually owns a whole /64),
/// or unknown (all such attempts share one key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source([u8; 17]);

impl Source {
    pub fn new(ip: Option<IpAddr>) -> Self {
        let mut k = [0u8; 17];
        match ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => {
                k[0] = 4;
                k[1..5].copy_from_slice(&v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                k[0] = 6;
                k[1..9].copy_from_slice(&v6.octets()[..8]);
            }
            None => {}
        }
        Self(k)
    }
}

/// Whom an attempt is for: a fixed-size digest of what the request names (so a long or random
/// user name costs the map no more than any other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Account([u8; 16]);

impl Account {
    /// From the parts that identify the user in the request (e.g. account name and user name).
    pub fn new(parts: &[&str]) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
        }
        let mut k = [0u8; 16];
        k.copy_from_slice(&h.finalize()[..16]);
        Self(k)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    UserAtAddress(Account, Source),
    Address(Source),
    User(Account),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    /// Decay is counted from here (the last failure, advanced by each forgotten failure).
    decay_from: Instant,
}

/// A started attempt; hand it back to [`LoginThrottle::succeeded`] or
/// [`LoginThrottle::abandoned`], or drop it (or pass it to [`LoginThrottle::failed`]) to leave it
/// counted as a failure.
#[derive(Debug)]
#[must_use = "an attempt that is dropped counts as a failure"]
pub struct Attempt {
    account: Account,
    source: Source,
}

impl Attempt {
    fn keys(&self) -> [Key; 3] {
        keys(self.account, self.source)
    }
}

fn keys(account: Account, source: Source) -> [Key; 3] {
    [Key::UserAtAddress(account, source), Key::Address(source), Key::User(account)]
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<Key, Entry>,
    previous: HashMap<Key, Entry>,
}

/// The throttle (see the module docs). Cheap to call: one short lock per attempt.
#[derive(Debug)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    map: Mutex<Generations>,
    /// Attempts refused by [`LoginThrottle::begin`] since start (the metrics read it).
    refusals: std::sync::atomic::AtomicU64,
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            map: Mutex::new(Generations::default()),
            refusals: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// Keys held now (at most [`ThrottleConfig::max_entries`]).
    pub fn len(&self) -> usize {
        let m = self.map.lock();
        m.current.len() + m.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Attempts refused since start because a key was in its delay.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn limit(&self, key: &Key) -> Limit {
        match key {
            Key::UserAtAddress(..) => self.config.user_at_address,
            Key::Address(_) => self.config.address,
            Key::User(_) => self.config.user,
        }
    }

    /// The wait required after `failures` failures under `limit`.
    fn delay(&self, failures: u32, limit: Limit) -> Duration {
        if failures < limit.free_failures {
            return Duration::ZERO;
        }
        let doublings = (failures - limit.free_failures).min(30);
        self.config.base_delay.saturating_mul(1u32 << doublings).min(limit.max_delay)
    }

    /// Forgets the failures `forget_after` has paid for; `false` when nothing is left.
    fn decay(&self, e: &mut Entry, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(e.decay_from);
        let forgotten = elapsed.as_nanos() / self.config.forget_after.as_nanos().max(1);
        let forgotten = u32::try_from(forgotten).unwrap_or(u32::MAX);
        if forgotten >= e.failures {
            return false;
        }
        e.failures -= forgotten;
        e.decay_from += self.config.forget_after.saturating_mul(forgotten);
        true
    }

    /// Starts an attempt: refused with the time to wait if any of its keys is in its delay, else
    /// counted (provisionally) as a failure of each key.
    pub fn begin(&self, account: Account, source: Source, now: Instant) -> Result<Attempt, Duration> {
        let mut m = self.map.lock();
        let keys = keys(account, source);
        let mut wait = Duration::ZERO;
        let mut entries: [Option<Entry>; 3] = [None; 3];
        for (slot, key) in entries.iter_mut().zip(&keys) {
            let found = match m.current.get(key) {
                Some(e) => Some(*e),
                None => m.previous.remove(key),
            };
            if let Some(mut e) = found
                && self.decay(&mut e, now)
            {
                // Callers read the clock before taking the lock, so `now` may be slightly earlier
                // than a failure another caller just recorded: without a delay there is no wait.
                let delay = self.delay(e.failures, self.limit(key));
                if !delay.is_zero() {
                    wait = wait.max((e.last_failure + delay).saturating_duration_since(now));
                }
                *slot = Some(e);
            }
        }
        let admitted = wait.is_zero();
        for (slot, key) in entries.into_iter().zip(keys) {
            let entry = match (slot, admitted) {
                (Some(e), false) => e,
                (Some(e), true) => {
                    Entry { failures: e.failures.saturating_add(1), last_failure: now, decay_from: now }
                }
                (None, true) => Entry { failures: 1, last_failure: now, decay_from: now },
                (None, false) => {
                    m.current.remove(&key);
                    continue;
                }
            };
            self.insert(&mut m, key, entry);
        }
        if admitted {
            Ok(Attempt { account, source })
        } else {
            self.refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(wait)
        }
    }

    fn insert(&self, m: &mut Generations, key: Key, entry: Entry) {
        if !m.current.contains_key(&key) && m.current.len() >= self.config.max_entries / 2 {
            m.previous = std::mem::take(&mut m.current);
        }
        m.current.insert(key, entry);
    }

    /// Takes back one provisional failure of `key`.
    fn take_back(&self, m: &mut Generations, key: &Key) {
        for g in [&mut m.current, &mut m.previous] {
            if let Some(e) = g.get_mut(key) {
                e.failures = e.failures.saturating_sub(1);
                if e.failures == 0 {
                    g.remove(key);
                }
                return;
            }
        }
    }

    /// The password was right and the login succeeded: the user's keys start afresh; the address
    /// key forgets this attempt only.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut m = self.map.lock();
        for key in attempt.keys() {
            match key {
                Key::Address(_) => self.take_back(&mut m, &key),
                Key::UserAtAddress(..) | Key::User(_) => {
                    m.current.remove(&key);
                    m.previous.remove(&key);
                }
            }
        }
    }

    /// No password was checked (e.g. no worker was free, or the store failed): not a failure.
    pub fn abandoned(&self, attempt: Attempt) {
        let mut m = self.map.lock();
        for key in attempt.keys() {
            self.take_back(&mut m, &key);
        }
    }

    /// The attempt failed; it stays counted (the same as dropping it, said explicitly).
    pub fn failed(&self, attempt: Attempt) {
        drop(attempt);
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests: a failed unwrap is a failed test")]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            user_at_address: Limit { free_failures: 3, max_delay: secs(60) },
            address: Limit { free_failures: 10, max_delay: secs(60) },
            user: Limit { free_failures: 10, max_delay: secs(5) },
            base_delay: secs(1),
            forget_after: secs(60),
            max_entries: 1000,
        }
    }

    fn ip(last: u8) -> Source {
        Source::new(Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))))
    }

    /// A failed attempt at `at`; panics if it was refused.
    fn fail(t: &LoginThrottle, who: Account, from: Source, at: Instant) {
        t.failed(t.begin(who, from, at).unwrap());
    }

    #[test]
    fn delays_double_after_the_free_failures_up_to_the_cap() {
        let t = LoginThrottle::new(config());
        let (who, from, t0) = (Account::new(&["acct", "alice"]), ip(1), Instant::now());
        let mut now = t0;
        for _ in 0..3 {
            fail(&t, who, from, now);
        }
        let mut expected = Vec::new();
        let mut seen = Vec::new();
        for k in 0..8u32 {
            let wait = t.begin(who, from, now).unwrap_err();
            seen.push(wait);
            expected.push(secs(1 << k).min(secs(60)));
            // Just before the delay ends: still refused, and refusals are not counted.
            assert!(t.begin(who, from, now + wait - Duration::from_millis(1)).is_err());
            now += wait;
            fail(&t, who, from, now);
        }
        assert_eq!(seen, expected);
        assert_eq!(seen.last(), Some(&secs(60)), "capped");
        // Two refusals per round (at the wait and just before its end), none for admitted attempts.
        assert_eq!(t.refusals(), 16);
    }

    #[test]
    fn success_resets_the_user_and_later_failures_start_afresh() {
        let t = LoginThrottle::new(config());
        let (who, from, now) = (Account::new(&["acct", "alice"]), ip(1), Instant::now());
        for _ in 0..3 {
            fail(&t, who, from, now);
        }
        let wait = t.begin(who, from, now).unwrap_err();
        t.succeeded(t.begin(who, from, now + wait).unwrap());
        // Three free failures again, then the first delay again.
        let later = now + wait;
        for _ in 0..3 {
            fail(&t, who, from, later);
        }
        assert_eq!(t.begin(who, from, later).unwrap_err(), secs(1));
    }

    #[test]
    fn failures_are_forgotten_with_time() {
        let t = LoginThrottle::new(config());
        let (who, from, t0) = (Account::new(&["acct", "alice"]), ip(1), Instant::now());
        let mut now = t0;
        for _ in 0..3 {
            fail(&t, who, from, now);
        }
        for _ in 0..4 {
            now += t.begin(who, from, now).unwrap_err();
            fail(&t, who, from, now);
        }
        // 7 failures: the next wait is 16 s. After 2 quiet minutes two are forgotten (wait 4 s
        // from the last failure, long over); after 7 minutes the key is gone.
        assert_eq!(t.begin(who, from, now).unwrap_err(), secs(16));
        let a = t.begin(who, from, now + secs(120)).unwrap();
        t.abandoned(a);
        assert!(!t.is_empty());
        t.abandoned(t.begin(who, from, now + secs(7 * 60)).unwrap());
        assert_eq!(t.len(), 0, "all keys decayed and were dropped");
    }

    #[test]
    fn a_storm_from_one_address_does_not_lock_out_the_user_elsewhere() {
        let t = LoginThrottle::new(config());
        let (victim, t0) = (Account::new(&["acct", "admin"]), Instant::now());
        let (attacker, home) = (ip(66), ip(7));
        // The attacker hammers for 14 s, retrying as soon as it is let in.
        let mut now = t0;
        let mut checked = 0;
        while now < t0 + secs(14) {
            match t.begin(victim, attacker, now) {
                Ok(a) => {
                    checked += 1;
                    t.failed(a);
                }
                Err(_) => now += Duration::from_millis(10),
            }
        }
        // 3 free at once, then after 1 s, 2 s and 4 s; the next one is due at 15 s.
        assert_eq!(checked, 6);
        assert_eq!(t.begin(victim, attacker, now).unwrap_err(), secs(1));
        // The real user, from home, is let in at once.
        t.succeeded(t.begin(victim, home, now).unwrap());
        // That success does not lift the attacker's delay.
        assert_eq!(t.begin(victim, attacker, now).unwrap_err(), secs(1));
    }

    #[test]
    fn many_addresses_against_one_user_are_capped_low() {
        let t = LoginThrottle::new(config());
        let (victim, now) = (Account::new(&["acct", "admin"]), Instant::now());
        for i in 0..10 {
            fail(&t, victim, ip(i), now);
        }
        // The per-user key is now in its delay, for every address; its cap is 5 s.
        let mut at = now;
        for k in 0..10 {
            let wait = t.begin(victim, ip(200), at).unwrap_err();
            assert_eq!(wait, secs(1 << k).min(secs(5)));
            at += wait;
            fail(&t, victim, ip(100 + k), at);
        }
        assert_eq!(t.begin(victim, ip(202), at).unwrap_err(), secs(5));
    }

    #[test]
    fn one_address_spraying_user_names_is_throttled() {
        let t = LoginThrottle::new(config());
        let now = Instant::now();
        for i in 0..10 {
            fail(&t, Account::new(&["acct", &format!("user{i}")]), ip(9), now);
        }
        assert_eq!(t.begin(Account::new(&["acct", "fresh"]), ip(9), now).unwrap_err(), secs(1));
        assert!(t.begin(Account::new(&["acct", "fresh"]), ip(10), now).is_ok());
    }

    #[test]
    fn concurrent_attempts_count_before_they_finish_and_abandoned_ones_do_not() {
        let t = LoginThrottle::new(config());
        let (who, from, now) = (Account::new(&["acct", "alice"]), ip(1), Instant::now());
        // 64 parallel guesses: only the free three get through before any has finished.
        let started: Vec<_> = (0..64).filter_map(|_| t.begin(who, from, now).ok()).collect();
        assert_eq!(started.len(), 3);
        // None of them checked a password (the pool was busy): nothing is held against the user.
        for a in started {
            t.abandoned(a);
        }
        assert_eq!(t.len(), 0);
        assert_eq!((0..64).filter_map(|_| t.begin(who, from, now).ok()).count(), 3);
    }

    /// Concurrent callers read the clock before the lock: an attempt stamped a little before the
    /// last recorded failure must not be refused while the key has free failures left.
    #[test]
    fn attempts_arriving_out_of_clock_order_are_not_refused_within_the_free_failures() {
        let t = LoginThrottle::new(config());
        let (who, from, now) = (Account::new(&["acct", "alice"]), ip(1), Instant::now());
        fail(&t, who, from, now + Duration::from_millis(5));
        fail(&t, who, from, now);
        fail(&t, who, from, now + Duration::from_millis(1));
        assert!(t.begin(who, from, now + Duration::from_millis(2)).is_err(), "the free failures are used up");
    }

    #[test]
    fn memory_is_bounded_and_busy_keys_survive_eviction() {
        let t = LoginThrottle::new(ThrottleConfig { max_entries: 100, ..config() });
        let now = Instant::now();
        let attacker = ip(66);
        for i in 0..10_000u32 {
            // A random-looking user and address each time, plus a steady attacker.
            let who = Account::new(&["acct", &i.to_string()]);
            let from = Source::new(Some(IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)))));
            drop(t.begin(who, from, now));
            assert!(t.len() <= 100, "{}", t.len());
            if i % 10 == 0 {
                drop(t.begin(who, attacker, now));
            }
        }
        // The attacker's address key was used all along, so it was never evicted.
        assert!(t.begin(Account::new(&["acct", "x"]), attacker, now).is_err());
    }

    #[test]
    fn sources_ipv6_by_slash_64_and_ipv4_mapped_as_ipv4() {
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::new(Some(a.into())), Source::new(Some(b.into())));
        assert_ne!(Source::new(Some(a.into())), Source::new(Some(c.into())));
        let mapped: Ipv6Addr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Source::new(Some(mapped.into())), ip(1));
        assert_ne!(Source::new(None), ip(1));
        assert_ne!(Account::new(&["ab", "c"]), Account::new(&["a", "bc"]));
    }

    #[test]
    fn validation_refuses_unworkable_parameters() {
        assert!(ThrottleConfig::default().validate().is_ok());
        let mut c = config();
        c.user.max_delay = Duration::from_millis(10);
        assert!(c.validate().unwrap_err().contains("per user"));
        let mut c = config();
        c.address.free_failures = 0;
        assert!(c.validate().is_err());
        let mut c = config();
        c.forget_after = Duration::ZERO;
        assert!(c.validate().is_err());
    }
}
