//! mongod's TTL monitor: every [`TTL_PERIOD`] (mongod's `ttlMonitorSleepSecs`, 60 s) each index
//! with `expireAfterSeconds` on a single field deletes the documents whose field holds a date (or
//! an array holding one) older than that many seconds. As in mongod: the `_id` index, compound
//! indexes and capped collections are never TTL-swept, a document whose field is not a date is
//! kept, and deletion may lag expiry by up to one period. Before this monitor existed the option
//! was stored, listed and ignored.

use std::sync::Arc;
use std::time::Duration;

use bson::{Bson, DateTime, Document, doc};
use docplane_engine::{DeleteStatement, Engine};
use docplane_query::{Filter, NeverInterrupt};
use tokio::sync::watch;

use crate::state::NodeState;

/// How often the monitor sweeps (mongod's default `ttlMonitorSleepSecs`).
pub const TTL_PERIOD: Duration = Duration::from_secs(60);

/// Sweeps every [`TTL_PERIOD`] until the node shuts down.
pub(crate) async fn monitor(state: Arc<NodeState>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TTL_PERIOD) => {}
            _ = shutdown.changed() => return,
        }
        let st = state.clone();
        match tokio::task::spawn_blocking(move || ttl_pass(&st.engine, DateTime::now())).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "TTL monitor deleted expired documents"),
            Err(e) => tracing::warn!(error = %e, "TTL monitor pass did not finish"),
        }
    }
}

/// The field and lifetime (seconds) of a TTL index as `listIndexes` lists it, or `None` when the
/// index is not one the monitor sweeps.
fn ttl_index(spec: &Document) -> Option<(String, i64)> {
    let secs = match spec.get("expireAfterSeconds")? {
        Bson::Int32(n) => i64::from(*n),
        Bson::Int64(n) => *n,
        Bson::Double(f) if f.is_finite() => *f as i64,
        _ => return None,
    };
    let key = spec.get_document("key").ok()?;
    if key.len() != 1 {
        return None;
    }
    let field = key.keys().next()?;
    (field != "_id" && secs >= 0).then(|| (field.clone(), secs))
}

/// One sweep at `now`; the number of documents deleted.
pub fn ttl_pass(engine: &Engine, now: DateTime) -> u64 {
    let mut deleted = 0;
    for db in engine.list_databases() {
        for coll in engine.list_collections(&db.name) {
            if coll.options.get_bool("capped").unwrap_or(false) {
                continue;
            }
            let Ok(indexes) = engine.list_indexes(&db.name, &coll.name) else { continue };
            for (field, secs) in indexes.iter().filter_map(ttl_index) {
                let cutoff =
                    DateTime::from_millis(now.timestamp_millis().saturating_sub(secs.saturating_mul(1000)));
                // `$lt` a date matches only dates (and arrays holding an earlier one), as mongod's
                // monitor deletes.
                let Ok(filter) = Filter::parse(&doc! {field: {"$lt": cutoff}}) else { continue };
                let out = engine.delete(
                    &db.name,
                    &coll.name,
                    &[DeleteStatement::new(filter, false)],
                    true,
                    &NeverInterrupt,
                );
                if let Some(e) = out.write_errors.first() {
                    tracing::warn!(ns = %format!("{}.{}", db.name, coll.name), error = %e.errmsg, "TTL delete failed");
                }
                deleted += out.n;
            }
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn expired_dates_go_the_rest_stays() {
        let e = Engine::in_memory();
        let now = DateTime::now();
        let ago = |s: i64| DateTime::from_millis(now.timestamp_millis() - s * 1000);
        let docs = vec![
            doc! {"_id": 1, "t": ago(120)},
            doc! {"_id": 2, "t": ago(10)},
            doc! {"_id": 3, "t": "not a date"},
            doc! {"_id": 4},
            doc! {"_id": 5, "t": [ago(5), ago(300)]},
        ];
        let out = e.insert("db", "c", docs, true, &NeverInterrupt);
        assert!(out.write_errors.is_empty());
        let ttl = doc! {"key": {"t": 1}, "name": "t_1", "expireAfterSeconds": 60};
        e.create_indexes("db", "c", &[ttl], &NeverInterrupt).unwrap();
        assert_eq!(ttl_pass(&e, now), 2);
        let all = e
            .find("db", "c", &docplane_engine::FindQuery::new(Filter::match_all()), &NeverInterrupt)
            .unwrap();
        let left: Vec<i32> = all.docs.iter().map(|d| d.get_i32("_id").unwrap()).collect();
        assert_eq!(left, vec![2, 3, 4]);
        assert_eq!(ttl_pass(&e, now), 0);
    }

    #[test]
    fn only_single_field_non_id_indexes_are_ttl() {
        assert_eq!(ttl_index(&doc! {"key": {"t": 1}, "expireAfterSeconds": 5}), Some(("t".into(), 5)));
        assert_eq!(ttl_index(&doc! {"key": {"_id": 1}, "expireAfterSeconds": 5}), None);
        assert_eq!(ttl_index(&doc! {"key": {"a": 1, "t": 1}, "expireAfterSeconds": 5}), None);
        assert_eq!(ttl_index(&doc! {"key": {"t": 1}}), None);
        assert_eq!(ttl_index(&doc! {"key": {"t": 1}, "expireAfterSeconds": -1}), None);
    }
}
