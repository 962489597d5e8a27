//! Connection statistics (the vendor's `ShowConnectionStatistics`): a node's client connections
//! counted per client IP, split into *inner* (the service's own: docplane's connections and the
//! cluster members') and *outer* (every other client). Pure: [`count`] reads `$currentOp`
//! entries listed with idle connections.

use std::collections::{BTreeMap, HashSet};

use docplane_driver::ops::{entry_app_name, entry_tag};
use mongodb::bson::{Bson, Document};

use crate::rails::CLUSTER_USER;

/// Most per-IP rows the vendor's answer carries in each list.
pub const MAX_IP_ROWS: usize = 200;

/// Connections of one or more nodes, per client IP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// docplane's own and the cluster members' connections, per client IP.
    pub inner: BTreeMap<String, u64>,
    /// Every other client's connections, per client IP.
    pub outer: BTreeMap<String, u64>,
}

impl ConnectionStats {
    /// Adds another node's counts.
    pub fn merge(&mut self, other: ConnectionStats) {
        for (ip, n) in other.inner {
            *self.inner.entry(ip).or_default() += n;
        }
        for (ip, n) in other.outer {
            *self.outer.entry(ip).or_default() += n;
        }
    }

    pub fn total_inner(&self) -> u64 {
        self.inner.values().sum()
    }

    pub fn total_outer(&self) -> u64 {
        self.outer.values().sum()
    }

    /// A list's rows for the answer: most connections first (then by IP), at most
    /// [`MAX_IP_ROWS`].
    pub fn rows(counts: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
        let mut rows: Vec<(String, u64)> = counts.iter().map(|(ip, n)| (ip.clone(), *n)).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(MAX_IP_ROWS);
        rows
    }
}

/// The IP of `host:port` (`[v6]:port` and bare addresses too).
fn ip_of(client: &str) -> &str {
    if let Some(rest) = client.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match client.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => client,
    }
}

fn connection_id(entry: &Document) -> Option<i64> {
    match entry.get("connectionId") {
        Some(Bson::Int32(n)) => Some(i64::from(*n)),
        Some(Bson::Int64(n)) => Some(*n),
        _ => None,
    }
}

fn is_cluster_member(entry: &Document) -> bool {
    entry.get_array("effectiveUsers").is_ok_and(|users| {
        users.iter().filter_map(Bson::as_document).any(|u| u.get_str("user").is_ok_and(|n| n == CLUSTER_USER))
    })
}

/// Counts the connections among `entries` (`$currentOp` with `idleConnections`): one per
/// `connectionId` (or, without one, per `client` address and `desc`), skipping idle sessions and
/// cursors and entries without a client address. Inner when the connection is docplane's
/// (`app_name`, or a docplane read's tag) or a cluster member's.
pub fn count(entries: &[Document], app_name: &str) -> ConnectionStats {
    let mut seen: HashSet<String> = HashSet::new();
    let mut stats = ConnectionStats::default();
    for e in entries {
        if e.get_str("type").is_ok_and(|t| t == "idleSession" || t == "idleCursor") {
            continue;
        }
        let Some(client) =
            e.get_str("client").ok().or_else(|| e.get_str("client_s").ok()).filter(|c| !c.is_empty())
        else {
            continue;
        };
        let key = match connection_id(e) {
            Some(id) => format!("#{id}"),
            None => format!("{client}/{}", e.get_str("desc").unwrap_or("")),
        };
        if !seen.insert(key) {
            continue;
        }
        let inner = entry_app_name(e) == Some(app_name) || entry_tag(e).is_some() || is_cluster_member(e);
        let side = if inner { &mut stats.inner } else { &mut stats.outer };
        *side.entry(ip_of(client).to_owned()).or_default() += 1;
    }
    stats
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn counts_each_connection_once_per_side() {
        let app = "docplane-control";
        let entries = vec![
            doc! {"connectionId": 1, "client": "10.0.0.5:41000", "appName": "shop", "active": true},
            doc! {"connectionId": 2, "client": "10.0.0.5:41001", "active": false},
            doc! {"connectionId": 3, "client": "10.0.0.6:5000", "appName": "shop"},
            // docplane's own, by name and by tag.
            doc! {"connectionId": 4, "client": "127.0.0.1:6000", "appName": app},
            doc! {"connectionId": 5, "client": "127.0.0.1:6001", "command": {"aggregate": 1, "comment": "docplane:00ff"}},
            // A member's replication.
            doc! {"connectionId": 6, "client": "10.0.0.9:7000", "effectiveUsers": [{"user": "__system", "db": "local"}]},
            // The same connection listed twice; the server's own thread; an idle session.
            doc! {"connectionId": 1, "client": "10.0.0.5:41000"},
            doc! {"desc": "TTLMonitor", "active": true},
            doc! {"type": "idleSession", "client": "10.0.0.5:1"},
            doc! {"client": "[::1]:9000", "desc": "conn9"},
        ];
        let s = count(&entries, app);
        assert_eq!(
            s.outer,
            BTreeMap::from([("10.0.0.5".into(), 2), ("10.0.0.6".into(), 1), ("::1".into(), 1)])
        );
        assert_eq!(s.inner, BTreeMap::from([("127.0.0.1".into(), 2), ("10.0.0.9".into(), 1)]));
        assert_eq!((s.total_inner(), s.total_outer()), (3, 4));
        assert_eq!(ConnectionStats::rows(&s.outer)[0], ("10.0.0.5".to_owned(), 2));
    }

    #[test]
    fn rows_are_capped() {
        let counts: BTreeMap<String, u64> =
            (0..300).map(|i| (format!("10.0.{}.{}", i / 256, i % 256), 1)).collect();
        assert_eq!(ConnectionStats::rows(&counts).len(), MAX_IP_ROWS);
    }
}
