"""DDS session APIs driven by the vendor's official Python SDK (huaweicloudsdkdds, AK/SK signing).

Usage: dds_sdk.py <endpoint> <ak> <sk> <project_id> <mongodb-uri>
ListInstances finds the node, pymongo runs a `sleep` on it, ListSessions shows the sleep,
DeleteSession kills it and pymongo sees error 11601; invalid parameters and unknown ids come back
as the vendor's error codes. Exits 0 and prints OK on success.
"""
import json
import sys
import threading
import time

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdds.v3 import (
    DdsClient,
    DeleteSessionRequest,
    DeleteSessionRequestBody,
    ListInstancesRequest,
    ListSessionsRequest,
)
from pymongo import MongoClient
from pymongo.errors import OperationFailure

endpoint, ak, sk, project_id, uri = sys.argv[1:6]
dds = (
    DdsClient.new_builder()
    .with_credentials(BasicCredentials(ak, sk, project_id))
    .with_endpoints([endpoint])
    .build()
)


def expect_error(call, code, status=400):
    try:
        call()
    except ClientRequestException as e:
        assert e.status_code == status, (e.status_code, e.error_code, e.error_msg)
        assert e.error_code == code, (e.error_code, e.error_msg)
        return e
    raise AssertionError(f"expected {code}")


# ListInstances: the registered embedded node.
instances = dds.list_instances(ListInstancesRequest(mode="Single", limit=10))
assert instances.total_count == 1, instances
instance = instances.instances[0]
assert instance.datastore.type == "DDS-Community", instance.datastore
node_id = instance.groups[0].nodes[0].id
assert instance.groups[0].nodes[0].role == "Primary"

# pymongo runs the operation that gets killed.
victim_client = MongoClient(uri, appName="sdk-victim", serverSelectionTimeoutMS=5000)
result = {}


def victim():
    try:
        victim_client.admin.command({"sleep": 1, "millis": 30000})
        result["err"] = None
    except OperationFailure as e:
        result["err"] = e


t = threading.Thread(target=victim)
t.start()

# ListSessions shows it.
sleep = None
deadline = time.time() + 10
while sleep is None and time.time() < deadline:
    page = dds.list_sessions(ListSessionsRequest(node_id=node_id, type="command", limit=100))
    for s in page.sessions:
        if s.active and '"sleep"' in s.operation:
            sleep = s
    if sleep is None:
        time.sleep(0.05)
assert sleep is not None, "sleep never listed"
assert isinstance(sleep.cost_time, str) and int(sleep.cost_time) >= 0, sleep.cost_time
assert sleep.type == "command" and sleep.namespace == "admin.$cmd", sleep
assert json.loads(sleep.operation)["millis"] == 30000
assert page.total_count >= 1

# Vendor error codes come through the SDK's exception.
expect_error(lambda: dds.list_sessions(ListSessionsRequest(node_id=node_id, plan_summary="TABLESCAN")), "DBS.301072")
expect_error(lambda: dds.list_sessions(ListSessionsRequest(node_id=node_id, limit=101)), "DBS.280439")
expect_error(
    lambda: dds.delete_session(
        DeleteSessionRequest(node_id=node_id, body=DeleteSessionRequestBody(sessions=[sleep.id, "999999"]))
    ),
    "DBS.301071",
)
assert t.is_alive(), "a refused kill must kill nothing"

# DeleteSession kills it; pymongo sees 11601.
dds.delete_session(DeleteSessionRequest(node_id=node_id, body=DeleteSessionRequestBody(sessions=[sleep.id])))
t.join(10)
assert not t.is_alive(), "the sleep did not end"
assert result["err"] is not None and result["err"].code == 11601, result
print("OK")
