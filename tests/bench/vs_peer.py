"""Side-by-side pymongo workload against two wire servers (issue 10 item 9).

Usage: vs_peer.py <label>=<uri> <label>=<uri> [--docs=N] [--rounds=R]

Each round runs every measurement on each server in turn (the order alternates by round), so
both see the same machine load; the report gives per-server medians and the ratio of the second
server's time to the first's (">1" means the first is faster). Measurements (N documents, 50,000
by default): batched inserts (insert_many in batches of 1,000), a filtered scan (unindexed range +
equality, few matches), fetching the whole collection, indexed point lookups (2,000 find_one on an
indexed field), update_many on a tenth of the documents, a $group aggregation (sum/avg over 10
groups), and the round trip (2,000 pings).
"""
import statistics
import sys
import time

import pymongo

args = [a for a in sys.argv[1:] if "=" in a and not a.startswith("--")]
opts = dict(a.lstrip("-").split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
docs_n = int(opts.get("docs", 50_000))
rounds = int(opts.get("rounds", 5))
servers = [a.split("=", 1) for a in args]
assert len(servers) == 2, __doc__

LOOKUPS = 2_000
PINGS = 2_000


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def run_round(client, rnd):
    db = client[f"bench_{rnd}"]
    c = db["c"]
    c.drop()
    docs = [{"k": i, "g": i % 10, "v": float(i % 997), "n": 0, "s": f"value-{i % 100}", "pad": "x" * 64}
            for i in range(docs_n)]
    out = {}

    def inserts():
        for i in range(0, docs_n, 1_000):
            c.insert_many([dict(d) for d in docs[i:i + 1_000]], ordered=True)
    out["batched inserts"], _ = timed(inserts)
    out["filtered scan"], n = timed(lambda: len(list(c.find({"v": {"$gt": 990.0}, "s": "value-7"}))))
    assert n >= 0
    out["fetch whole collection"], n = timed(lambda: len(list(c.find({}, batch_size=10_000))))
    assert n == docs_n, n
    c.create_index("k")

    def lookups():
        step = max(1, docs_n // LOOKUPS)
        for i in range(0, step * LOOKUPS, step):
            assert c.find_one({"k": i % docs_n}) is not None
    out["indexed point lookups (2,000)"], _ = timed(lookups)
    out["update_many (a tenth)"], r = timed(lambda: c.update_many({"g": 3}, {"$inc": {"n": 1}}))
    assert r.modified_count == docs_n // 10, r.modified_count
    pipeline = [{"$group": {"_id": "$g", "total": {"$sum": "$n"}, "avg": {"$avg": "$v"}, "cnt": {"$sum": 1}}}]
    out["$group aggregation"], groups = timed(lambda: list(c.aggregate(pipeline)))
    assert len(groups) == 10, groups

    def pings():
        for _ in range(PINGS):
            db.command("ping")
    out["round trip (2,000 pings)"], _ = timed(pings)
    client.drop_database(db.name)
    return out


clients = [(label, pymongo.MongoClient(uri, serverSelectionTimeoutMS=5_000)) for label, uri in servers]
results = {label: {} for label, _ in clients}
for rnd in range(rounds):
    order = clients if rnd % 2 == 0 else list(reversed(clients))
    for label, client in order:
        for name, secs in run_round(client, rnd).items():
            results[label].setdefault(name, []).append(secs)

(a, _), (b, _) = clients
print(f"pymongo {pymongo.version}, {docs_n} documents, {rounds} rounds; median seconds")
print(f"{'measurement':<32} {a:>12} {b:>12}  {b}/{a}")
worst = None
for name in results[a]:
    ma, mb = statistics.median(results[a][name]), statistics.median(results[b][name])
    ratio = mb / ma if ma > 0 else float("inf")
    worst = ratio if worst is None else min(worst, ratio)
    print(f"{name:<32} {ma:>12.4f} {mb:>12.4f}  {ratio:>6.2f}x")
print(f"lowest ratio: {worst:.2f}x")
