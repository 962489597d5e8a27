//! Latency histograms and outcome counts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered; `code` is the body's `error_code` for a 4xx/5xx.
    Status { status: u16, code: Option<String> },
    /// No answer within the client's timeout.
    Timeout,
    /// Connection refused, reset, or a broken response.
    Transport,
}

impl Outcome {
    /// The key counted in [`OpStats::outcomes`]: `200`, `400 DBS.301071`, `timeout`, `transport`.
    pub fn key(&self) -> String {
        match self {
            Outcome::Status { status, code: Some(c) } => format!("{status} {c}"),
            Outcome::Status { status, code: None } => status.to_string(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Transport => "transport".into(),
        }
    }
}

/// Latencies in microseconds; percentiles by nearest rank over every sample (runs are bounded, so
/// every sample is kept).
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    samples: Vec<u64>,
    sorted: bool,
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        self.samples.push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn merge(&mut self, other: &Histogram) {
        self.samples.extend_from_slice(&other.samples);
        self.sorted = false;
    }

    /// The nearest-rank percentile `p` in (0, 100], in microseconds; `None` when empty.
    pub fn percentile(&mut self, p: f64) -> Option<u64> {
        if self.samples.is_empty() {
            return None;
        }
        if !self.sorted {
            self.samples.sort_unstable();
            self.sorted = true;
        }
        let n = self.samples.len();
        // Nearest rank: the smallest value with at least p% of the samples at or below it.
        let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
        self.samples.get(rank.min(n) - 1).copied()
    }

    pub fn summary(&mut self) -> LatencySummary {
        LatencySummary {
            p50_ms: self.percentile(50.0).map(ms),
            p90_ms: self.percentile(90.0).map(ms),
            p99_ms: self.percentile(99.0).map(ms),
            max_ms: self.percentile(100.0).map(ms),
        }
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Percentiles in milliseconds (microsecond precision).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// Everything measured for one operation of the mix.
#[derive(Debug, Clone, Default)]
pub struct OpStats {
    /// Latency of every request, whatever its outcome.
    pub latency: Histogram,
    /// Count per [`Outcome::key`].
    pub outcomes: BTreeMap<String, u64>,
    pub ok: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub timeouts: u64,
    pub transport_errors: u64,
}

impl OpStats {
    pub fn record(&mut self, d: Duration, outcome: &Outcome) {
        self.latency.record(d);
        *self.outcomes.entry(outcome.key()).or_default() += 1;
        match outcome {
            Outcome::Status { status, .. } if *status < 400 => self.ok += 1,
            Outcome::Status { status, .. } if *status < 500 => self.client_errors += 1,
            Outcome::Status { .. } => self.server_errors += 1,
            Outcome::Timeout => self.timeouts += 1,
            Outcome::Transport => self.transport_errors += 1,
        }
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.client_errors + self.server_errors + self.timeouts + self.transport_errors
    }

    pub fn merge(&mut self, other: &OpStats) {
        self.latency.merge(&other.latency);
        for (k, v) in &other.outcomes {
            *self.outcomes.entry(k.clone()).or_default() += v;
        }
        self.ok += other.ok;
        self.client_errors += other.client_errors;
        self.server_errors += other.server_errors;
        self.timeouts += other.timeouts;
        self.transport_errors += other.transport_errors;
    }
}

/// One second of the run: how many requests ended in it, by class, and their slowest latency.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Second {
    pub ok: u64,
    #[serde(rename = "4xx")]
    pub c4xx: u64,
    #[serde(rename = "5xx")]
    pub c5xx: u64,
    /// Timeouts and transport errors.
    pub failed: u64,
    pub max_ms: u64,
}

impl Second {
    pub fn record(&mut self, d: Duration, outcome: &Outcome) {
        match outcome {
            Outcome::Status { status, .. } if *status < 400 => self.ok += 1,
            Outcome::Status { status, .. } if *status < 500 => self.c4xx += 1,
            Outcome::Status { .. } => self.c5xx += 1,
            Outcome::Timeout | Outcome::Transport => self.failed += 1,
        }
        self.max_ms = self.max_ms.max(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(50.0), None);
        for us in (1..=100).rev() {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.percentile(50.0), Some(50));
        assert_eq!(h.percentile(99.0), Some(99));
        assert_eq!(h.percentile(100.0), Some(100));
        assert_eq!(h.percentile(0.1), Some(1));
        h.record(Duration::from_micros(1_000_000));
        assert_eq!(h.percentile(100.0), Some(1_000_000));
        let s = h.summary();
        assert_eq!(s.max_ms, Some(1000.0));
        assert_eq!(s.p50_ms, Some(0.051));
    }

    #[test]
    fn outcomes_are_classified() {
        let mut s = OpStats::default();
        let d = Duration::from_millis(3);
        s.record(d, &Outcome::Status { status: 200, code: None });
        s.record(d, &Outcome::Status { status: 400, code: Some("DBS.301071".into()) });
        s.record(d, &Outcome::Status { status: 500, code: Some("DBS.280005".into()) });
        s.record(d, &Outcome::Timeout);
        s.record(d, &Outcome::Transport);
        assert_eq!((s.ok, s.client_errors, s.server_errors, s.timeouts, s.transport_errors), (1, 1, 1, 1, 1));
        assert_eq!(s.requests(), 5);
        assert_eq!(s.outcomes["400 DBS.301071"], 1);
        assert_eq!(s.outcomes["timeout"], 1);
        let mut t = OpStats::default();
        t.merge(&s);
        t.merge(&s);
        assert_eq!((t.requests(), t.latency.len(), t.outcomes["200"]), (10, 10, 2));
        let mut sec = Second::default();
        sec.record(Duration::from_millis(7), &Outcome::Status { status: 503, code: None });
        sec.record(d, &Outcome::Transport);
        assert_eq!((sec.c5xx, sec.failed, sec.max_ms), (1, 1, 7));
    }
}
