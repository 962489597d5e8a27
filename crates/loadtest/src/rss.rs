//! Resident memory of other processes, read from `/proc/<pid>/status` (Linux).

use serde::Serialize;

/// `VmRSS` of `pid` in KiB, or `None` if the process is gone (or this is not Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

/// The `VmRSS:` line of a `/proc/<pid>/status` text, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value),
        _ => None,
    }
}

/// One process's memory over a run: a sample per second (seconds since the start, KiB).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RssSeries {
    pub pid: u32,
    pub samples: Vec<(u64, u64)>,
}

impl RssSeries {
    /// First, largest and last sample, and last/first as a ratio (1.0 = flat).
    pub fn summary(&self) -> Option<RssSummary> {
        let first = self.samples.first()?.1;
        let last = self.samples.last()?.1;
        let max = self.samples.iter().map(|s| s.1).max()?;
        // The median of the second half against the median of the first quarter after warm-up
        // tells growth apart from one early allocation burst.
        let n = self.samples.len();
        let mid = |from: usize, to: usize| {
            let mut v: Vec<u64> = self.samples.get(from..to)?.iter().map(|s| s.1).collect();
            v.sort_unstable();
            v.get(v.len() / 2).copied()
        };
        let early = mid(n / 4, n / 2).or(Some(first))?;
        let late = mid(n / 2, n).or(Some(last))?;
        Some(RssSummary {
            pid: self.pid,
            first_kib: first,
            max_kib: max,
            last_kib: last,
            early_median_kib: early,
            late_median_kib: late,
            late_over_early: if early == 0 { 0.0 } else { late as f64 / early as f64 },
        })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RssSummary {
    pub pid: u32,
    pub first_kib: u64,
    pub max_kib: u64,
    pub last_kib: u64,
    /// Median over the second quarter of the run.
    pub early_median_kib: u64,
    /// Median over the second half of the run.
    pub late_median_kib: u64,
    pub late_over_early: f64,
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests: a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let text = "Name:\tdocplane\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nThreads: 4\n";
        assert_eq!(parse_vm_rss(text), Some(12345));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert_eq!(parse_vm_rss("VmRSS: 12 MB\n"), None);
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn summary_separates_warmup_from_growth() {
        let s = RssSeries { pid: 1, samples: (0..8).map(|t| (t, if t == 0 { 10 } else { 100 })).collect() };
        let sum = s.summary().unwrap();
        assert_eq!((sum.first_kib, sum.max_kib, sum.last_kib), (10, 100, 100));
        assert!((sum.late_over_early - 1.0).abs() < 1e-9);
        let grow = RssSeries { pid: 1, samples: (0..8).map(|t| (t, 100 + t * 10)).collect() };
        assert!(grow.summary().unwrap().late_over_early > 1.05);
        assert!(RssSeries::default().summary().is_none());
    }
}
