"""Capped collections, tailable/awaitData cursors, streaming aggregates and hints with pymongo 4.x.

Usage: node_pymongo_streams.py <mongodb-uri>. Exits 0 and prints OK on success.
"""
import sys
import threading
import time

from pymongo import CursorType, MongoClient
from pymongo.errors import OperationFailure

uri = sys.argv[1]
client = MongoClient(uri, appName="pymongo-streams", serverSelectionTimeoutMS=5000)
db = client.pystreams
db.drop_collection("log")
db.drop_collection("plain")

# A capped collection keeps its newest `max` documents, in insertion order.
log = db.create_collection("log", capped=True, size=100000, max=5)
assert log.options() == {"capped": True, "size": 100096, "max": 5}, log.options()
for i in (7, 3, 9, 1, 8, 2):
    log.insert_one({"_id": i})
assert [d["_id"] for d in log.find()] == [3, 9, 1, 8, 2]
assert db.command("collStats", "log")["capped"] is True

# TAILABLE_AWAIT: the cursor waits for documents inserted after it reached the end.
cursor = log.find(cursor_type=CursorType.TAILABLE_AWAIT).max_await_time_ms(1000)
seen = [next(cursor)["_id"] for _ in range(5)]
assert seen == [3, 9, 1, 8, 2], seen


def writer():
    time.sleep(0.3)
    log.insert_one({"_id": 100})


threading.Thread(target=writer).start()
started = time.time()
# The getMore that waits (up to max_await_time_ms) is woken by the insert.
doc = next(cursor)
assert doc["_id"] == 100, doc
assert 0.25 < time.time() - started < 0.9, time.time() - started
# Nothing new: the getMore returns an empty batch after max_await_time_ms, the cursor alive.
started = time.time()
try:
    next(cursor)
    raise AssertionError("a document appeared from nowhere")
except StopIteration:
    pass
assert 0.9 < time.time() - started < 3, time.time() - started
assert cursor.alive
cursor.close()

# TAILABLE without awaitData returns at once at the end of the data.
cursor = log.find(cursor_type=CursorType.TAILABLE)
assert len([d for d in cursor]) == 5
assert cursor.alive
log.insert_one({"_id": 101})
assert [d["_id"] for d in cursor] == [101]
cursor.close()

# Tailable on an uncapped collection: mongod's BadValue.
db.plain.insert_many([{"_id": i, "n": i} for i in range(300)])
try:
    next(db.plain.find(cursor_type=CursorType.TAILABLE))
    raise AssertionError("tailable on an uncapped collection was accepted")
except OperationFailure as e:
    assert e.code == 2, e

# A streaming aggregate: small batches over getMores give the whole result.
pipeline = [{"$match": {"n": {"$gte": 50}}}, {"$project": {"twice": {"$multiply": ["$n", 2]}}}, {"$skip": 3}, {"$limit": 100}]
got = list(db.plain.aggregate(pipeline, batchSize=7))
assert [d["_id"] for d in got] == list(range(53, 153)), [d["_id"] for d in got][:5]
assert got[0]["twice"] == 106

# Hints are honoured and must name an index.
db.plain.create_index("n")
assert db.plain.count_documents({"n": {"$lt": 10}}, hint="n_1") == 10
for call in (
    lambda: db.plain.count_documents({}, hint="nope"),
    lambda: list(db.plain.aggregate([], hint="nope")),
    lambda: db.plain.delete_many({"n": 1}, hint="nope"),
    lambda: db.plain.find_one_and_delete({"n": 1}, hint="nope"),
):
    try:
        call()
        raise AssertionError("a hint naming no index was accepted")
    except OperationFailure as e:
        assert e.code == 2, e
assert db.plain.delete_many({"n": {"$lt": 5}}, hint=[("n", 1)]).deleted_count == 5
print("OK pymongo streams")
