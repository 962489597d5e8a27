//! The operation registry: every command in flight is an [`OpEntry`] with a positive 32-bit opid.
//!
//! Invariants:
//! - opids start at 1, are positive `i32` and never reused while the process lives (registration fails
//!   once they are exhausted).
//! - An entry is removed when its [`OpGuard`] drops, so a panicking handler cannot leak it.
//! - Killing is two writes: an atomic code (read by [`OpInterrupt::check`] at every interrupt point of
//!   blocking work) and a `watch` channel (awaited by async waits such as `sleep`), so both kinds of work
//!   notice a kill without polling delay.
//! - A `maxTimeMS` deadline arms a timer on the runtime that marks the state expired when it
//!   passes, so [`OpInterrupt::pending`] (what the query crate's fine-grained polls read) is one
//!   atomic load and never reads the clock; `check` still compares with the clock, so a late or
//!   missing timer delays nothing that `check` sees.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bson::Document;
use docplane_query::{CommandError, Interrupt};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::auth::UserName;
use crate::conn::ConnInfo;

/// Error codes an op can be killed with.
pub const KILL_INTERRUPTED: i32 = 11601;
/// Killed because the node shuts down.
pub const KILL_SHUTDOWN: i32 = 11600;
/// Refused by a kill-op rule's `max_concurrency` once its plan summary was known
/// ([`crate::rules`]): the check fails with the refusal [`OpState::refuse`] stored.
pub const KILL_REFUSED: i32 = crate::rules::REFUSED_CODE;

/// Kill state and counters shared by an op and its interrupt handles.
#[derive(Debug)]
pub struct OpState {
    kill: AtomicI32,
    tx: watch::Sender<i32>,
    deadline: Option<Instant>,
    yields: AtomicU64,
    /// Set when the deadline passed (by the timer [`OpState::arm_deadline`] starts).
    expired: AtomicBool,
    timer: Mutex<Option<tokio::task::AbortHandle>>,
    /// The error of a refusal ([`KILL_REFUSED`]).
    refusal: OnceLock<CommandError>,
    /// The `maxTimeAlwaysTimeOut` fail point, for an op with a deadline (mongod's
    /// `OperationContext::hasDeadlineExpired` consults it at every interrupt check).
    always_time_out: Option<Arc<crate::failpoint::AlwaysTimeOut>>,
}

impl Drop for OpState {
    fn drop(&mut self) {
        if let Some(t) = self.timer.get_mut().take() {
            t.abort();
        }
    }
}

impl OpState {
    /// A fresh state; `deadline` comes from `maxTimeMS`.
    pub fn new(deadline: Option<Instant>) -> Self {
        let (tx, _) = watch::channel(0);
        OpState {
            kill: AtomicI32::new(0),
            tx,
            deadline,
            yields: AtomicU64::new(0),
            expired: AtomicBool::new(false),
            timer: Mutex::new(None),
            refusal: OnceLock::new(),
            always_time_out: None,
        }
    }
    /// A fresh state whose deadline (if any) also expires while `fail_point` is on.
    pub fn with_fail_point(
        deadline: Option<Instant>,
        fail_point: &Arc<crate::failpoint::AlwaysTimeOut>,
    ) -> Self {
        let mut st = OpState::new(deadline);
        st.always_time_out = deadline.map(|_| Arc::clone(fail_point));
        st
    }
    /// Whether `maxTimeAlwaysTimeOut` makes this op's deadline count as passed now.
    fn forced_expiry(&self) -> bool {
        self.always_time_out.as_ref().is_some_and(|f| f.is_on())
    }
    /// Whether the `maxTimeMS` deadline has passed (or the fail point says so): mongod's
    /// `hasDeadlineExpired`, which its command dispatch checks before the command runs.
    pub fn deadline_expired(&self) -> bool {
        match self.deadline {
            Some(d) => Instant::now() >= d || self.forced_expiry(),
            None => false,
        }
    }
    /// Starts the timer that marks the state expired at its deadline (on the current runtime;
    /// without one, or without a deadline, nothing). The timer holds the state weakly and is
    /// aborted when the state drops.
    pub fn arm_deadline(self: &Arc<Self>) {
        let (Some(d), Ok(rt)) = (self.deadline, tokio::runtime::Handle::try_current()) else { return };
        let weak = Arc::downgrade(self);
        let task = rt.spawn(async move {
            tokio::time::sleep_until(d.into()).await;
            if let Some(st) = weak.upgrade() {
                st.expired.store(true, Ordering::Release);
            }
        });
        *self.timer.lock() = Some(task.abort_handle());
    }
    /// Whether a check may fail now (killed or past the deadline), without reading the clock.
    pub fn pending(&self) -> bool {
        self.kill.load(Ordering::Acquire) != 0 || self.expired.load(Ordering::Acquire) || self.forced_expiry()
    }
    /// Marks the op killed with `code` (first kill wins) and wakes its waits.
    pub fn kill(&self, code: i32) {
        if self.kill.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.tx.send_replace(code);
        }
    }
    /// Refuses the op with `error` (a kill-op rule's admission refusal): its checks fail with
    /// it from now on (unless it was killed before).
    pub fn refuse(&self, error: CommandError) {
        if self.refusal.set(error).is_ok() {
            self.kill(KILL_REFUSED);
        }
    }
    /// The refusal, when the op was refused rather than killed.
    pub fn refused(&self) -> Option<CommandError> {
        match self.kill.load(Ordering::Acquire) {
            KILL_REFUSED => self.refusal.get().cloned(),
            _ => None,
        }
    }
    /// Whether a kill is pending.
    pub fn killed(&self) -> bool {
        self.kill.load(Ordering::Acquire) != 0
    }
    /// The error a check returns now, if any.
    pub fn error(&self) -> Option<CommandError> {
        match self.kill.load(Ordering::Acquire) {
            0 => {}
            KILL_SHUTDOWN => return Some(CommandError::interrupted_at_shutdown()),
            KILL_REFUSED => {
                return Some(self.refusal.get().cloned().unwrap_or_else(CommandError::interrupted));
            }
            _ => return Some(CommandError::interrupted()),
        }
        if self.deadline_expired() {
            if self.forced_expiry()
                && let Some(f) = &self.always_time_out
            {
                f.entered();
            }
            return Some(CommandError::max_time_ms_expired());
        }
        None
    }
    /// The `maxTimeMS` deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    /// numYields so far.
    pub fn yields(&self) -> u64 {
        self.yields.load(Ordering::Relaxed)
    }
    /// Resolves when the op is killed (immediately if it already is).
    pub async fn killed_wait(&self) -> CommandError {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|c| *c != 0).await;
        self.error().unwrap_or_else(CommandError::interrupted)
    }
    /// Waits `dur`, returning early with the kill or maxTimeMS error.
    pub async fn interruptible_sleep(&self, dur: Duration) -> Result<(), CommandError> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        let end = Instant::now() + dur;
        let (wake, by_deadline) = match self.deadline {
            Some(d) if d < end => (d, true),
            _ => (end, false),
        };
        tokio::select! {
            e = self.killed_wait() => Err(e),
            _ = tokio::time::sleep_until(wake.into()) => {
                if by_deadline { Err(CommandError::max_time_ms_expired()) } else { Ok(()) }
            }
        }
    }
}

/// The [`Interrupt`] handed to the engine for one op; cheap to clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct OpInterrupt(pub Arc<OpState>);

impl Interrupt for OpInterrupt {
    fn check(&self) -> Result<(), CommandError> {
        match self.0.error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    fn yielded(&self) {
        self.0.yields.fetch_add(1, Ordering::Relaxed);
    }
    fn pending(&self) -> bool {
        self.0.pending()
    }
}

/// One operation in flight.
#[derive(Debug)]
pub struct OpEntry {
    pub opid: i32,
    pub conn: Arc<ConnInfo>,
    pub users: Vec<UserName>,
    /// The `lsid` document as the client sent it (`{id: UUID}`), with `uid` added by the session registry.
    pub lsid: Option<Document>,
    /// Session key (the lsid's UUID bytes).
    pub session: Option<Vec<u8>>,
    /// `none|update|insert|query|command|getmore|remove|killcursors`.
    pub op: &'static str,
    pub ns: String,
    /// The command as `currentOp` shows it with `truncateOps: false` (redacted where it carries a
    /// secret); shared with the running handler, never copied per command.
    pub command: Arc<Document>,
    /// Its truncated form, built the first time a `truncateOps: true` reader asks
    /// ([`OpEntry::shown_command`]).
    truncated: OnceLock<Option<Document>>,
    pub command_name: String,
    pub started: Instant,
    pub plan_summary: Mutex<Option<String>>,
    pub cursor_id: AtomicI64,
    pub state: Arc<OpState>,
    /// The immutable part of this op's `currentOp` document (built by [`crate::cmd::currentop`] the
    /// first time an op on a connection with known client metadata is reported; a connection runs
    /// one command at a time, so its metadata cannot change while the op lives).
    pub current_op_template: OnceLock<Document>,
    /// The registry (for the kill-op rules waiting for the plan summary).
    registry: Weak<OpRegistry>,
    /// Its state under the installed kill-op rules ([`crate::rules`]).
    pub rules: Mutex<crate::rules::OpRules>,
    /// Whether its admission ran (rules installed later evaluate it then).
    pub admitted: AtomicBool,
    /// Whether a rule waits for its plan summary.
    pub awaiting_plan: AtomicBool,
}

impl OpEntry {
    /// The interrupt handle for the engine.
    pub fn interrupt(&self) -> OpInterrupt {
        OpInterrupt(self.state.clone())
    }
    /// Records the plan summary (`COLLSCAN`, `IXSCAN { a: 1 }`). The first time, the kill-op
    /// rules waiting for it decide: a refusal fails the op's next check (before the plan runs).
    pub fn set_plan_summary(&self, s: String) {
        *self.plan_summary.lock() = Some(s);
        if self.awaiting_plan.swap(false, Ordering::AcqRel)
            && let Some(reg) = self.registry.upgrade()
            && let Some(me) = reg.get(self.opid)
        {
            reg.rules.on_plan(&reg, &me);
        }
    }
    /// Time since start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
    /// mongod's truncated form of the command (`{$truncated: "...", comment}`), when it is over
    /// [`crate::cmd::MAX_CURRENT_OP_COMMAND`] bytes: what `truncateOps: true` readers see.
    pub fn truncated_command(&self) -> Option<&Document> {
        self.truncated.get_or_init(|| crate::cmd::truncated_command(&self.command)).as_ref()
    }
}

/// Data needed to register an op.
#[derive(Debug)]
pub struct NewOp {
    pub conn: Arc<ConnInfo>,
    pub users: Vec<UserName>,
    pub lsid: Option<Document>,
    pub session: Option<Vec<u8>>,
    pub op: &'static str,
    pub ns: String,
    pub command: Arc<Document>,
    pub command_name: String,
    pub deadline: Option<Instant>,
}

/// All ops in flight.
#[derive(Debug)]
pub struct OpRegistry {
    next: AtomicI32,
    ops: Mutex<BTreeMap<i32, Arc<OpEntry>>>,
    /// The kill-op rules the control plane installed.
    pub rules: crate::rules::NativeRules,
    /// The `maxTimeAlwaysTimeOut` fail point every op with a deadline consults.
    pub always_time_out: Arc<crate::failpoint::AlwaysTimeOut>,
}

impl Default for OpRegistry {
    fn default() -> Self {
        OpRegistry {
            next: AtomicI32::new(1),
            ops: Mutex::new(BTreeMap::new()),
            rules: crate::rules::NativeRules::default(),
            always_time_out: Arc::default(),
        }
    }
}

/// Removes its op from the registry when dropped.
#[derive(Debug)]
pub struct OpGuard {
    registry: Arc<OpRegistry>,
    pub entry: Arc<OpEntry>,
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        self.registry.ops.lock().remove(&self.entry.opid);
        self.registry.rules.release(&self.entry);
    }
}

impl OpRegistry {
    /// Registers an op; fails when 2^31-1 opids have been used, or with the refusal of a
    /// kill-op rule's `max_concurrency` ([`crate::rules`]; the op is then gone again).
    pub fn register(self: &Arc<Self>, new: NewOp) -> Result<OpGuard, CommandError> {
        let opid =
            self.next
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    if n == i32::MAX { None } else { Some(n + 1) }
                })
                .map_err(|_| CommandError::new(1, "InternalError", "operation ids exhausted"))?;
        let entry = Arc::new(OpEntry {
            opid,
            conn: new.conn,
            users: new.users,
            lsid: new.lsid,
            session: new.session,
            op: new.op,
            ns: new.ns,
            command: new.command,
            truncated: OnceLock::new(),
            command_name: new.command_name,
            started: Instant::now(),
            plan_summary: Mutex::new(None),
            cursor_id: AtomicI64::new(0),
            state: {
                let st = Arc::new(OpState::with_fail_point(new.deadline, &self.always_time_out));
                st.arm_deadline();
                st
            },
            current_op_template: OnceLock::new(),
            registry: Arc::downgrade(self),
            rules: Mutex::new(crate::rules::OpRules::default()),
            admitted: AtomicBool::new(false),
            awaiting_plan: AtomicBool::new(false),
        });
        self.ops.lock().insert(opid, entry.clone());
        let guard = OpGuard { registry: self.clone(), entry };
        self.rules.admit(self, &guard.entry)?;
        Ok(guard)
    }
    /// The op with this id.
    pub fn get(&self, opid: i32) -> Option<Arc<OpEntry>> {
        self.ops.lock().get(&opid).cloned()
    }
    /// All ops in flight, by opid.
    pub fn snapshot(&self) -> Vec<Arc<OpEntry>> {
        self.ops.lock().values().cloned().collect()
    }
    /// The ops in flight among `opids`, by opid (one lock for all of them).
    pub fn get_many<'a>(&self, opids: impl IntoIterator<Item = &'a i32>) -> Vec<Arc<OpEntry>> {
        let mut wanted: Vec<i32> = opids.into_iter().copied().collect();
        wanted.sort_unstable();
        wanted.dedup();
        let ops = self.ops.lock();
        wanted.iter().filter_map(|id| ops.get(id).cloned()).collect()
    }
    /// Kills every op matching `pred` with `code`; returns how many.
    pub fn kill_where(&self, code: i32, mut pred: impl FnMut(&OpEntry) -> bool) -> usize {
        let ops = self.snapshot();
        let mut n = 0;
        for op in ops {
            if pred(&op) {
                op.state.kill(code);
                n += 1;
            }
        }
        n
    }
    /// Number of ops in flight.
    pub fn len(&self) -> usize {
        self.ops.lock().len()
    }
    /// Whether no op is in flight.
    pub fn is_empty(&self) -> bool {
        self.ops.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn kill_wakes_sleep_at_once() {
        let st = Arc::new(OpState::new(None));
        let st2 = st.clone();
        let t = tokio::spawn(async move { st2.interruptible_sleep(Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        st.kill(KILL_INTERRUPTED);
        let r = t.await.unwrap();
        assert_eq!(r.unwrap_err().code, 11601);
        assert!(start.elapsed() < Duration::from_millis(200));
        // second kill with another code does not change the first
        st.kill(KILL_SHUTDOWN);
        assert_eq!(OpInterrupt(st).check().unwrap_err().code, 11601);
    }

    #[tokio::test]
    async fn deadline_gives_max_time_ms_expired() {
        let st = OpState::new(Some(Instant::now() + Duration::from_millis(30)));
        let r = st.interruptible_sleep(Duration::from_secs(10)).await;
        assert_eq!(r.unwrap_err().code, 50);
        assert_eq!(st.error().unwrap().code, 50);
    }

    #[tokio::test]
    async fn deadline_timer_sets_pending_without_a_check() {
        let st = Arc::new(OpState::new(Some(Instant::now() + Duration::from_millis(20))));
        st.arm_deadline();
        assert!(!st.pending());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(st.pending(), "the timer marked the state expired");
        assert_eq!(OpInterrupt(st.clone()).check().unwrap_err().code, 50);
        let killed = OpState::new(None);
        assert!(!killed.pending());
        killed.kill(KILL_INTERRUPTED);
        assert!(killed.pending());
    }

    #[test]
    fn get_many_returns_live_ops_by_opid() {
        let reg = Arc::new(OpRegistry::default());
        let conn = Arc::new(ConnInfo::new(1, std::net::SocketAddr::from(([127, 0, 0, 1], 1))));
        let new = || NewOp {
            conn: conn.clone(),
            users: Vec::new(),
            lsid: None,
            session: None,
            op: "command",
            ns: "admin.$cmd".into(),
            command: Arc::new(Document::new()),
            command_name: "ping".into(),
            deadline: None,
        };
        let a = reg.register(new()).unwrap();
        let b = reg.register(new()).unwrap();
        let c = reg.register(new()).unwrap();
        let (ia, ib, ic) = (a.entry.opid, b.entry.opid, c.entry.opid);
        drop(b);
        let got: Vec<i32> = reg.get_many(&[ic, ib, ia, ic, -1]).iter().map(|o| o.opid).collect();
        assert_eq!(got, vec![ia, ic]);
        assert!(reg.get_many(&[]).is_empty());
    }

    #[test]
    fn yields_counted() {
        let i = OpInterrupt(Arc::new(OpState::new(None)));
        i.yielded();
        i.yielded();
        assert_eq!(i.0.yields(), 2);
        assert!(i.check().is_ok());
    }
}
