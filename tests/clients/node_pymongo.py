"""Core node scenario with pymongo 4.x: auth, insert, find, currentOp, killOp ending a running sleep.

Usage: node_pymongo.py <mongodb-uri>. Exits 0 and prints OK on success.
"""
import sys
import threading
import time

from pymongo import MongoClient
from pymongo.errors import OperationFailure

uri = sys.argv[1]
client = MongoClient(uri, appName="pymongo-victim", serverSelectionTimeoutMS=5000)
admin_client = MongoClient(uri, appName="pymongo-admin", serverSelectionTimeoutMS=5000)

coll = client.pyclients.items
coll.drop()
coll.insert_many([{"_id": i, "v": i * 2} for i in range(10)])
docs = list(coll.find({"v": {"$gte": 10}}).sort("v", -1))
assert [d["_id"] for d in docs] == [9, 8, 7, 6, 5], docs
assert coll.count_documents({}) == 10

result = {}


def victim():
    try:
        client.admin.command({"sleep": 1, "millis": 30000})
        result["err"] = None
    except OperationFailure as e:
        result["err"] = e


t = threading.Thread(target=victim)
t.start()
opid = None
deadline = time.time() + 10
while opid is None and time.time() < deadline:
    ops = admin_client.admin.command({"currentOp": 1, "command.sleep": {"$exists": True}})["inprog"]
    if ops:
        op = ops[0]
        assert op["appName"] == "pymongo-victim", op
        assert op["active"] is True
        opid = op["opid"]
    else:
        time.sleep(0.01)
assert opid is not None, "sleep op never showed up in currentOp"
reply = admin_client.admin.command({"killOp": 1, "op": opid})
assert reply["info"] == "attempting to kill op", reply
t.join(10)
assert not t.is_alive()
err = result.get("err")
assert err is not None and err.code == 11601, err
print("OK pymongo", opid, err.code)
