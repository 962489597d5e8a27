"""RSS of an embedded node (issue 10 item 3): idle, after 200k x 1 KB inserts, after heavy reads
(a whole-collection find, a $group with $push, a top-k sort, a $range of 1e7 and a 200 MB sort,
both refused), after dropping the data, after the same again.

Run: .venv/bin/python scripts/reliability/node_rss.py target/debug/docplane
"""
import subprocess, time, sys, os, socket, tempfile
import pymongo
binary = sys.argv[1]
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
port = free_port()
d = tempfile.mkdtemp()
p = subprocess.Popen([binary, "node", "--data-dir", d, "--port", str(port), "--no-auth", "--log", "warn"])
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1]) // 1024
c = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=10000)
c.admin.command("ping")
print("idle:", rss(), "MiB")
coll = c.rss.big
pad = "x" * 1000
for b in range(200):
    coll.insert_many([{"_id": b * 1000 + i, "g": i % 1000, "n": i, "pad": pad} for i in range(1000)])
print("after inserting 200k x 1 KB:", rss(), "MiB")
t = time.time()
list(coll.find({}, batch_size=10000))
list(coll.aggregate([{"$group": {"_id": "$g", "n": {"$sum": 1}, "pads": {"$push": "$n"}}}]))
list(coll.aggregate([{"$sort": {"n": -1, "g": 1}}, {"$limit": 10}]))
try:
    list(coll.aggregate([{"$project": {"r": {"$range": [0, 10000000]}}}]))
except pymongo.errors.OperationFailure as e:
    print("  $range 1e7:", e.code)
try:
    list(coll.aggregate([{"$sort": {"pad": 1, "n": -1}}]))
except pymongo.errors.OperationFailure as e:
    print("  sort of 200 MB:", e.code)
print(f"after the queries ({time.time()-t:.1f} s):", rss(), "MiB")
coll.drop()
time.sleep(2)
print("after dropping the collection:", rss(), "MiB")
for b in range(200):
    coll.insert_many([{"_id": b * 1000 + i, "g": i % 1000, "n": i, "pad": pad} for i in range(1000)])
list(coll.aggregate([{"$group": {"_id": "$g", "n": {"$sum": 1}, "pads": {"$push": "$n"}}}]))
print("after the same data and a $group again:", rss(), "MiB")
coll.drop()
time.sleep(2)
print("after dropping it again:", rss(), "MiB")
c.close(); p.terminate(); p.wait()
