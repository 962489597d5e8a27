//! Human-readable values for the tables (pure): durations, times, addresses. JSON output never
//! goes through here; it is the API's answer unchanged.

use std::time::Duration;

/// A duration as people read it: `850us`, `12ms`, `1.5s`, `2m05s`, `3h07m`, `2d04h`.
pub fn duration(d: Duration) -> String {
    micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// [`duration`] of a count of microseconds (the API's `cost_time`).
pub fn micros(us: u64) -> String {
    const MS: u64 = 1_000;
    const S: u64 = 1_000_000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    match us {
        0..MS => format!("{us}us"),
        MS..S => format!("{}ms", us / MS),
        S..M => {
            // One decimal below 10 s, whole seconds above.
            let tenths = us / (S / 10);
            if tenths < 100 { format!("{}.{}s", tenths / 10, tenths % 10) } else { format!("{}s", us / S) }
        }
        M..H => format!("{}m{:02}s", us / M, (us % M) / S),
        H..D => format!("{}h{:02}m", us / H, (us % H) / M),
        _ => format!("{}d{:02}h", us / D, (us % D) / H),
    }
}

/// `host:port`, bracketing an IPv6 host.
pub fn host_port(host: &str, port: &str) -> String {
    if host.is_empty() {
        return String::new();
    }
    if port.is_empty() {
        return host.to_string();
    }
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Unix milliseconds as UTC, to the second: `2026-12-01 16:04:05Z`.
pub fn unix_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// "N of M" for a page of a listing: `rows` shown out of `total`, starting at `offset`.
pub fn page(shown: usize, total: Option<u64>, offset: u64, noun: &str) -> String {
    match total {
        Some(total) if shown == 0 && total > 0 => {
            format!("no {noun}s at offset {offset} of {total}")
        }
        Some(total) if (shown as u64) < total => {
            let first = offset + 1;
            let last = offset + shown as u64;
            format!("{first}-{last} of {total} {noun}(s); more with --offset {last}")
        }
        Some(total) => format!("{total} {noun}(s)"),
        None => format!("{shown} {noun}(s)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        let cases = [
            (0, "0us"),
            (850, "850us"),
            (12_345, "12ms"),
            (1_500_000, "1.5s"),
            (9_990_000, "9.9s"),
            (42_000_000, "42s"),
            (125_000_000, "2m05s"),
            (3 * 3_600_000_000 + 7 * 60_000_000, "3h07m"),
            (2 * 86_400_000_000 + 4 * 3_600_000_000, "2d04h"),
        ];
        for (us, text) in cases {
            assert_eq!(micros(us), text, "{us}");
        }
        assert_eq!(duration(Duration::from_secs(30)), "30s");
    }

    #[test]
    fn addresses_and_pages() {
        assert_eq!(host_port("10.0.0.5", "27017"), "10.0.0.5:27017");
        assert_eq!(host_port("::1", "27017"), "[::1]:27017");
        assert_eq!(host_port("", "27017"), "");
        assert_eq!(page(2, Some(2), 0, "instance"), "2 instance(s)");
        assert_eq!(page(1, Some(3), 0, "instance"), "1-1 of 3 instance(s); more with --offset 1");
        assert_eq!(page(2, Some(5), 2, "record"), "3-4 of 5 record(s); more with --offset 4");
        assert_eq!(page(0, Some(5), 9, "record"), "no records at offset 9 of 5");
        assert_eq!(unix_ms(0), "1970-01-01 00:00:00Z");
    }
}
